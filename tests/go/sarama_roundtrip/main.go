// Command sarama_roundtrip produces N keyed messages with headers through
// Sarama's SyncProducer (acks=WaitForAll), then reads every partition back from
// the oldest offset with a plain Sarama Consumer (ConsumePartition, no consumer
// group). It prints one JSON line and exits 1 on any mismatch: a message
// missing, read twice or altered (key, value, headers, timestamp), a key seen
// on two partitions, or a partition whose messages are out of produce order or
// not at the offsets the producer was acknowledged with.
//
// Built with Debian's Sarama 1.22 (golang-github-shopify-sarama-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tests/go/bin/sarama_roundtrip ./tests/go/sarama_roundtrip
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

// baseTS is the create time of message 0; message i carries baseTS + i ms.
const baseTS = int64(1_700_000_000_000)

type report struct {
	Version      string           `json:"version"`
	Codec        string           `json:"codec"`
	Topic        string           `json:"topic"`
	Created      bool             `json:"created"`
	Partitions   int              `json:"partitions"`
	Produced     int              `json:"produced"`
	Consumed     int              `json:"consumed"`
	PerPartition map[string]int   `json:"per_partition"`
	HighWater    map[string]int64 `json:"high_water"`
	Mismatches   []string         `json:"mismatches"`
	Error        string           `json:"error,omitempty"`
	ProduceMs    int64            `json:"produce_ms"`
	ConsumeMs    int64            `json:"consume_ms"`
}

type acked struct {
	partition int32
	offset    int64
}

func msgKey(i int) string   { return fmt.Sprintf("key-%d", i%97) }
func msgValue(i int) string { return fmt.Sprintf("value-%d", i) }
func msgHeaders(i int, codec string) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("i"), Value: []byte(strconv.Itoa(i))},
		{Key: []byte("client"), Value: []byte("sarama-" + codec)},
	}
}

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "broker address")
	topic := flag.String("topic", "sarama", "topic")
	n := flag.Int("n", 2000, "messages to produce")
	partitions := flag.Int("partitions", 0, "create the topic with this many partitions first (Sarama's ClusterAdmin); 0: do not create")
	codec := flag.String("codec", "none", "none, gzip, snappy, lz4 or zstd")
	batch := flag.Int("batch", 500, "messages per SendMessages call")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline for reading back")
	flag.Parse()

	rep := report{
		Version:      sarama.V2_2_0_0.String(),
		Codec:        *codec,
		Topic:        *topic,
		PerPartition: map[string]int{},
		HighWater:    map[string]int64{},
		Mismatches:   []string{},
	}
	fail := func(format string, args ...interface{}) {
		rep.Error = fmt.Sprintf(format, args...)
		out(rep)
		os.Exit(2)
	}
	cc, ok := codecs[*codec]
	if !ok {
		fail("unknown codec %q", *codec)
	}

	cfg := sarama.NewConfig()
	// The newest version this Sarama knows (== sarama.MaxVersion in 1.22): it
	// sends Produce v3, Fetch v4, Metadata v5, ListOffsets v1, CreateTopics v2.
	cfg.Version = sarama.V2_2_0_0
	cfg.ClientID = "sluice-sarama-test"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Compression = cc
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	// One request in flight per broker, so a retry cannot reorder a partition.
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Return.Errors = true
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 200 * time.Millisecond
	addrs := []string{*bootstrap}

	if *partitions > 0 {
		admin, err := sarama.NewClusterAdmin(addrs, cfg)
		if err != nil {
			fail("cluster admin: %v", err)
		}
		err = admin.CreateTopic(*topic, &sarama.TopicDetail{NumPartitions: int32(*partitions), ReplicationFactor: 1}, false)
		if err != nil {
			fail("create topic: %v", err)
		}
		admin.Close()
		rep.Created = true
	}

	// Produce.
	start := time.Now()
	producer, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		fail("sync producer: %v", err)
	}
	acks := make([]acked, *n)
	for lo := 0; lo < *n; lo += *batch {
		hi := lo + *batch
		if hi > *n {
			hi = *n
		}
		msgs := make([]*sarama.ProducerMessage, 0, hi-lo)
		for i := lo; i < hi; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{
				Topic:     *topic,
				Key:       sarama.StringEncoder(msgKey(i)),
				Value:     sarama.StringEncoder(msgValue(i)),
				Headers:   msgHeaders(i, *codec),
				Timestamp: time.Unix(0, (baseTS+int64(i))*int64(time.Millisecond)),
				Metadata:  i,
			})
		}
		if err := producer.SendMessages(msgs); err != nil {
			if pe, ok := err.(sarama.ProducerErrors); ok && len(pe) > 0 {
				fail("produce: %d errors, first: %v", len(pe), pe[0].Err)
			}
			fail("produce: %v", err)
		}
		for _, m := range msgs {
			acks[m.Metadata.(int)] = acked{m.Partition, m.Offset}
		}
		rep.Produced += len(msgs)
	}
	if err := producer.Close(); err != nil {
		fail("close producer: %v", err)
	}
	rep.ProduceMs = time.Since(start).Milliseconds()

	// Consume every partition from the oldest offset.
	start = time.Now()
	consumer, err := sarama.NewConsumer(addrs, cfg)
	if err != nil {
		fail("consumer: %v", err)
	}
	parts, err := consumer.Partitions(*topic)
	if err != nil {
		fail("partitions: %v", err)
	}
	sort.Slice(parts, func(a, b int) bool { return parts[a] < parts[b] })
	rep.Partitions = len(parts)
	want := map[int32]int{}
	for _, a := range acks {
		want[a.partition]++
	}
	got := map[int32][]*sarama.ConsumerMessage{}
	deadline := time.After(*timeout)
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(*topic, p, sarama.OffsetOldest)
		if err != nil {
			fail("consume partition %d: %v", p, err)
		}
	read:
		for len(got[p]) < want[p] {
			select {
			case m := <-pc.Messages():
				got[p] = append(got[p], m)
			case e := <-pc.Errors():
				fail("consume partition %d: %v", p, e.Err)
			case <-deadline:
				break read
			}
		}
		// Anything beyond what was produced would be a duplicate: wait briefly.
		select {
		case m := <-pc.Messages():
			got[p] = append(got[p], m)
		case <-time.After(200 * time.Millisecond):
		}
		rep.HighWater[strconv.Itoa(int(p))] = pc.HighWaterMarkOffset()
		pc.Close()
	}
	consumer.Close()
	rep.ConsumeMs = time.Since(start).Milliseconds()

	// Check.
	mismatch := func(format string, args ...interface{}) {
		if len(rep.Mismatches) < 20 {
			rep.Mismatches = append(rep.Mismatches, fmt.Sprintf(format, args...))
		}
	}
	seen := make([]bool, *n)
	keyPartition := map[string]int32{}
	nMismatch := 0
	for _, p := range parts {
		ms := got[p]
		rep.PerPartition[strconv.Itoa(int(p))] = len(ms)
		rep.Consumed += len(ms)
		if len(ms) != want[p] {
			mismatch("partition %d: read %d, produced %d", p, len(ms), want[p])
			nMismatch++
		}
		if hw := rep.HighWater[strconv.Itoa(int(p))]; hw != int64(want[p]) {
			mismatch("partition %d: high water %d, produced %d", p, hw, want[p])
			nMismatch++
		}
		last := -1
		for _, m := range ms {
			v := string(m.Value)
			i, err := strconv.Atoi(strings.TrimPrefix(v, "value-"))
			if err != nil || !strings.HasPrefix(v, "value-") || i < 0 || i >= *n {
				mismatch("p%d@%d: unexpected value %q", p, m.Offset, v)
				nMismatch++
				continue
			}
			if seen[i] {
				mismatch("message %d read twice", i)
				nMismatch++
			}
			seen[i] = true
			if i <= last {
				mismatch("partition %d out of produce order: %d after %d", p, i, last)
				nMismatch++
			}
			last = i
			if a := acks[i]; a.partition != m.Partition || a.offset != m.Offset {
				mismatch("message %d acked at p%d@%d, read at p%d@%d", i, a.partition, a.offset, m.Partition, m.Offset)
				nMismatch++
			}
			if string(m.Key) != msgKey(i) {
				mismatch("message %d: key %q", i, m.Key)
				nMismatch++
			}
			if kp, ok := keyPartition[string(m.Key)]; ok && kp != m.Partition {
				mismatch("key %q on partitions %d and %d", m.Key, kp, m.Partition)
				nMismatch++
			}
			keyPartition[string(m.Key)] = m.Partition
			wantH := msgHeaders(i, *codec)
			okH := len(m.Headers) == len(wantH)
			for j := 0; okH && j < len(wantH); j++ {
				okH = m.Headers[j] != nil && string(m.Headers[j].Key) == string(wantH[j].Key) &&
					string(m.Headers[j].Value) == string(wantH[j].Value)
			}
			if !okH {
				mismatch("message %d: headers %s", i, fmtHeaders(m.Headers))
				nMismatch++
			}
			if ts := m.Timestamp.UnixNano() / int64(time.Millisecond); ts != baseTS+int64(i) {
				mismatch("message %d: timestamp %d, want %d", i, ts, baseTS+int64(i))
				nMismatch++
			}
		}
	}
	for i, s := range seen {
		if !s {
			mismatch("message %d never read", i)
			nMismatch++
			break
		}
	}
	out(rep)
	if nMismatch > 0 || rep.Consumed != rep.Produced {
		os.Exit(1)
	}
}

func fmtHeaders(hs []*sarama.RecordHeader) string {
	parts := make([]string, 0, len(hs))
	for _, h := range hs {
		if h == nil {
			parts = append(parts, "<nil>")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s", h.Key, h.Value))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func out(r report) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

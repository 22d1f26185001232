// Command sarama_offsets asks a broker for a partition's oldest and newest
// offsets through Sarama's Client.GetOffset, configured as Kafka 0.10.0:
// below 0.10.1 Sarama sends ListOffsets v0 (its OffsetRequest version 0,
// with max_num_offsets 1), and it expects exactly one offset back. It prints
// one JSON line: {"oldest": n, "newest": n} or {"error": "..."}.
//
// Built with Debian's Sarama 1.22 (golang-github-shopify-sarama-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tests/go/bin/sarama_offsets ./tests/go/sarama_offsets
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/Shopify/sarama"
)

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "broker address")
	topic := flag.String("topic", "", "topic")
	partition := flag.Int("partition", 0, "partition")
	flag.Parse()

	config := sarama.NewConfig()
	config.Version = sarama.V0_10_0_0
	config.ClientID = "sluice-sarama-offsets"
	out := map[string]interface{}{"version": config.Version.String()}
	if err := offsets(*bootstrap, *topic, int32(*partition), config, out); err != nil {
		out["error"] = err.Error()
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	if _, failed := out["error"]; failed {
		os.Exit(1)
	}
}

func offsets(bootstrap, topic string, partition int32, config *sarama.Config, out map[string]interface{}) error {
	client, err := sarama.NewClient([]string{bootstrap}, config)
	if err != nil {
		return err
	}
	defer client.Close()
	for _, at := range []struct {
		name string
		time int64
	}{{"oldest", sarama.OffsetOldest}, {"newest", sarama.OffsetNewest}} {
		offset, err := client.GetOffset(topic, partition, at.time)
		if err != nil {
			return fmt.Errorf("%s: %v", at.name, err)
		}
		out[at.name] = offset
	}
	return nil
}

import java.util.Collection;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

/** The programs' machine-readable output: one JSON object per line on stdout
 *  (the client's own log goes to stderr through slf4j-simple). */
final class Out {
    private Out() {}

    /** Prints {"k1": v1, "k2": v2, ...} as one line. Values may be strings,
     *  numbers, booleans, null, collections or maps (keys as strings). */
    static void emit(Object... keysAndValues) {
        StringBuilder sb = new StringBuilder("{");
        for (int i = 0; i < keysAndValues.length; i += 2) {
            if (i > 0) sb.append(", ");
            string(sb, String.valueOf(keysAndValues[i]));
            sb.append(": ");
            value(sb, keysAndValues[i + 1]);
        }
        sb.append('}');
        synchronized (System.out) {
            System.out.println(sb);
            System.out.flush();
        }
    }

    /** A step of a check program: its result fields, or the exception its
     *  future failed with. */
    interface Step {
        Object[] run() throws Exception;
    }

    /** Runs one step and prints {"step": name, "ok": true, ...fields}, or
     *  {"step": name, "ok": false, "error": class, "message": ...} when its
     *  future failed: a failed future is an outcome. */
    static void step(String name, Step step) throws Exception {
        Object[] fields;
        try {
            fields = step.run();
        } catch (ExecutionException e) {
            Throwable c = cause(e);
            emit("step", name, "ok", false, "error", c.getClass().getName(), "message", c.getMessage());
            return;
        }
        Object[] line = new Object[4 + fields.length];
        line[0] = "step";
        line[1] = name;
        line[2] = "ok";
        line[3] = true;
        System.arraycopy(fields, 0, line, 4, fields.length);
        emit(line);
    }

    /** The exception a future or a client call failed with, unwrapped. */
    static Throwable cause(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    private static void value(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Number || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) sb.append(", ");
                first = false;
                string(sb, String.valueOf(e.getKey()));
                sb.append(": ");
                value(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object item : (Collection<?>) v) {
                if (!first) sb.append(", ");
                first = false;
                value(sb, item);
            }
            sb.append(']');
        } else {
            string(sb, v.toString());
        }
    }

    private static void string(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
            }
        }
        sb.append('"');
    }
}

package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// Golden frames of the /ws protocol, as the package doc describes them.
var goldenFrames = []string{
	`{"op":"subscribe","id":"s1","queue":"q"}`,
	`{"op":"subscribe","id":"s1","exchange":"amq.topic","key":"a.*","ack":"client","prefetch":10}`,
	`{"op":"ack","tag":1}`,
	`{"op":"nack","tag":2,"requeue":false}`,
	`{"op":"unsubscribe","id":"s1"}`,
	`{"op":"publish","exchange":"","key":"q","body":"hi","properties":{"content_type":"text/plain","delivery_mode":2,"headers":{"a":[1,2.5,{"b":null}]}},"reply_to":"r","confirm":true,"id":7}`,
	`{"op":"publish","key":"q","body":"AAE=","encoding":"base64"}`,
	`{"op":"touch","tag":3}`,
	`{"op":"reply_address"}`,
	`{"op":"ping","id":1.5}`,
	`{"op":"subscribe"}`,
	`[]`,
}

// FuzzParseFrame feeds client frames, whole and in two halves, to the
// parser and to the message builder: errors are fine, panics are not.
func FuzzParseFrame(f *testing.F) {
	for _, g := range goldenFrames {
		f.Add([]byte(g))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			fr, err := parseFrame(b)
			if err != nil {
				return
			}
			if fr.Op == "" {
				t.Fatal("accepted a frame without op")
			}
			if fr.Op == "publish" {
				if m, err := fr.message(); err == nil {
					// What was accepted must be encodable back to JSON.
					p := jsonmsg.PropsToJSON(&m.Properties)
					if _, err := json.Marshal(p); err != nil {
						t.Fatalf("cannot re-encode %q: %v", b, err)
					}
				}
			}
		}
		check(b)
		half := len(b) / 2
		check(b[:half])
		check(b[half:])
	})
}

// FuzzPublishBody feeds management publish bodies through decoding and
// property conversion.
func FuzzPublishBody(f *testing.F) {
	f.Add([]byte(`{"routing_key":"q","payload":"x","payload_encoding":"string","properties":{"headers":{"n":1e400,"m":-0}}}`))
	f.Add([]byte(`{"routing_key":"q","payload":"/w==","payload_encoding":"base64","properties":{"timestamp":1700000000,"priority":9}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req publishRequest
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if dec.Decode(&req) != nil {
			return
		}
		if _, err := jsonmsg.DecodePayload(req.Payload, req.PayloadEncoding); err != nil {
			return
		}
		p, err := req.Properties.ToBroker()
		if err != nil {
			return
		}
		jp := jsonmsg.PropsToJSON(&p)
		if _, err := json.Marshal(jp); err != nil {
			t.Fatalf("cannot re-encode %q: %v", b, err)
		}
	})
}

// FuzzStreamArgs: an SSE offset= or Last-Event-ID, or a /ws offset, never
// panics, and a numeric Last-Event-ID always resumes right after it.
func FuzzStreamArgs(f *testing.F) {
	for _, s := range []string{"first", "12", "", "-1", "18446744073709551615", "1h", "x"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, offset, lastEventID string) {
		args, err := streamArgs(offset, lastEventID)
		if n, perr := strconv.ParseUint(lastEventID, 10, 63); perr == nil && n < 1<<63-1 {
			if err != nil || args["x-stream-offset"] != int64(n+1) {
				t.Fatalf("Last-Event-ID %q: %v %v", lastEventID, args, err)
			}
		}
		_, _ = streamArgs(json.Number(offset), "")
	})
}

package httpapi

import "testing"

// FuzzRealtimeFrames feeds the realtime ops' frames to the parser.
func FuzzRealtimeFrames(f *testing.F) {
	for _, s := range []string{
		`{"op":"connect","token":"a.b.c"}`, `{"op":"refresh"}`, `{"op":"presence","channel":"amq.topic/r"}`,
		`{"op":"send","to":"u","body":"x","encoding":"base64"}`, `{"op":"subscribe","id":"s","exchange":"amq.topic","key":"k","presence":true,"info":{"a":1}}`,
		`{"op":"subscribe","id":"s","queue":"q","join_leave":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err == nil && fr.Op == "send" && fr.To == "" {
			t.Fatal("send without to accepted")
		}
		if err == nil && len(fr.Info) > maxInfoLen {
			t.Fatal("oversized info accepted")
		}
	})
}

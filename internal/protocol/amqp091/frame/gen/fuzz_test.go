package main

import (
	"os"
	"testing"
)

// FuzzGenerate: the generator reads a spec file, not network input, but a
// damaged or edited spec must give an error, never a panic.
func FuzzGenerate(f *testing.F) {
	spec, err := os.ReadFile("../spec/amqp0-9-1.xml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(spec)
	f.Add([]byte(`<amqp><class name="x" index="1"><method name="m" index="1"><field name="f" domain="nope"/></method></class></amqp>`))
	f.Add([]byte(`<amqp>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Generate(b)
	})
}

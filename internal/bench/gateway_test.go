package bench

import (
	"strings"
	"testing"
)

func TestNormalizeGateway(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scenario = ScenarioRPCGateway
	got, err := cfg.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got.HTTPURL != DefaultHTTPURL || got.Callers != DefaultCallers || got.Consumers != 1 || got.Producers != DefaultCallers {
		t.Fatalf("defaults: %+v", got)
	}
	if d := Describe(got); !strings.Contains(d, "16 callers (HTTP keep-alive) -> gateway -> 1 service instance") {
		t.Fatalf("describe: %s", d)
	}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.HTTPURL = "ws://x" }, "--http-url"},
		{func(c *Config) { c.HTTPURL = "http://" }, "--http-url"},
		{func(c *Config) { c.URL = "mqtt://x" }, "--url"},
		{func(c *Config) { c.Rate = 10 }, "--rate"},
		{func(c *Config) { c.DirectReplyTo = true }, "--direct-reply-to"},
		{func(c *Config) { c.Callers = -1 }, "--callers"},
	} {
		bad := DefaultConfig()
		bad.Scenario = ScenarioRPCGateway
		c.edit(&bad)
		if _, err := bad.Normalize(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %s, got %v", c.want, err)
		}
	}
}

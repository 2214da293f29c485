package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFilePrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(path, []byte("amqp: \":7000\"\nheartbeat: 30s\ncors-origins: [https://a.example, https://b.example]\ndata-dir: /from/file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	amqp := fs.String("amqp", ":5672", "")
	hb := fs.Duration("heartbeat", time.Minute, "")
	cors := fs.String("cors-origins", "", "")
	dir := fs.String("data-dir", "./data", "")
	fs.String("config", "", "")
	args := []string{"--config", path, "--data-dir", "/from/flag"}
	if got := configPath(args); got != path {
		t.Fatalf("configPath = %q", got)
	}
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_AMQP", ":8000")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if *amqp != ":8000" || *hb != 30*time.Second || *cors != "https://a.example,https://b.example" || *dir != "/from/flag" {
		t.Errorf("amqp=%q heartbeat=%v cors=%q data-dir=%q; want env > file, flags > all", *amqp, *hb, *cors, *dir)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("heartbeat: soon\nnope: 1\n"), 0o600)
	err := applyConfigFile(fs, bad)
	if err == nil || !strings.Contains(err.Error(), `unknown key "nope"`) || !strings.Contains(err.Error(), "invalid heartbeat") {
		t.Errorf("bad file error: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/heraldmq/herald/internal/store"
)

// runStore implements `herald store dump DIR`: a readable listing of a
// message log's segments and records, for debugging what is on disk.
func runStore(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "dump" {
		fmt.Fprint(stderr, `Usage: herald store dump DIR

Lists the segments and records of a message log. DIR is the data
directory (--data-dir) or its log/ subdirectory.
`)
		return 2
	}
	dir := args[1]
	if matches, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg")); len(matches) > 0 {
		dir = filepath.Join(dir, "log")
	}
	if err := store.Dump(stdout, dir); err != nil {
		fmt.Fprintf(stderr, "herald store dump: %v\n", err)
		return 1
	}
	return 0
}

package rpc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/heraldmq/herald/pkg/rpc"
)

type benchEcho struct{ _ int }

func (*benchEcho) Echo(_ context.Context, req *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return req, nil
}

// BenchmarkCall is the round trip of `herald bench rpc-sdk` (one client,
// one service instance in this process, 16 callers, a 128-byte protobuf
// body) against the broker at $HERALD_RPC_BENCH_URL (pkg/ may not import
// the broker, so it is not started here), e.g.
//
//	herald serve --amqp 127.0.0.1:5679 --mqtt off --stomp off &
//	HERALD_RPC_BENCH_URL=amqp://guest:guest@127.0.0.1:5679/ \
//	  go test -run - -bench Call -benchmem ./pkg/rpc
//
// allocs/op is then the SDK's own allocations per call, both ends
// together (client and server), with no broker's mixed in.
func BenchmarkCall(b *testing.B) {
	url := os.Getenv("HERALD_RPC_BENCH_URL")
	if url == "" {
		b.Skip("HERALD_RPC_BENCH_URL is not set")
	}
	conn := rpc.ConnConfig{URL: url, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := rpc.NewServer(rpc.ServerConfig{ConnConfig: conn})
	if err := srv.Register(&benchEcho{}, rpc.Service{Name: "bench-sdk"}); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := rpc.NewClient(rpc.ClientConfig{ConnConfig: conn})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	echo := rpc.NewMethod[wrapperspb.BytesValue, wrapperspb.BytesValue](c, "bench-sdk.Echo")
	req := &wrapperspb.BytesValue{Value: make([]byte, 125)} // 128 B encoded
	ctx := context.Background()
	for { // the instance's consumer may still be starting
		if _, err := echo.Call(ctx, req); err == nil {
			break
		} else if !errors.Is(err, rpc.ErrNoResponders) {
			b.Fatal(err)
		}
	}
	b.SetParallelism(8) // 16 callers on 2 cores
	b.ReportAllocs()
	r0, w0, sys := syscalls()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := echo.Call(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if r1, w1, ok := syscalls(); sys && ok {
		// Both ends' reads and writes: how well frames share a system call.
		b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
		b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
	}
}

// syscalls is the process's read and write system calls so far (Linux's
// /proc/self/io); ok is false where there is no such file.
func syscalls() (reads, writes uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, true
}

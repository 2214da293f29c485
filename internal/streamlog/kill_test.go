package streamlog

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// killChildEnv makes the test binary act as the child of TestKill9.
const killChildEnv = "HERALD_STREAMLOG_KILL_CHILD"

// TestKill9 runs a child process that appends and stores a consumer
// position as fast as it can, printing what was acknowledged, kills it
// with SIGKILL mid-flight, and checks that the reopened stream holds
// every acknowledged record and at least the acknowledged position.
func TestKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lastRec, lastPos uint64
		haveRec, havePos := false, false
		sc := bufio.NewScanner(out)
		for lines := 0; sc.Scan() && lines < 3000; lines++ {
			kind, v, _ := strings.Cut(sc.Text(), " ")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch kind {
			case "A":
				lastRec, haveRec = n, true
			case "O":
				lastPos, havePos = n, true
			}
		}
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		if !haveRec || !havePos {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		s, err := Open(dir, Options{MaxSegmentBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.NextOffset <= lastRec {
			t.Fatalf("round %d: record %d was acknowledged, the stream ends at %d", round, lastRec, st.NextOffset)
		}
		if p, ok := s.Offset("c"); !ok || p < lastPos {
			t.Fatalf("round %d: position %d was acknowledged, recovered %d", round, lastPos, p)
		}
		got := readAllFrom(t, s, First())
		for i, g := range got {
			if g.off != uint64(i) || string(g.rec) != fmt.Sprint("rec-", i) {
				t.Fatalf("round %d: record %d is %d %q", round, i, g.off, g.rec)
			}
		}
		s.Close()
	}
}

// killChild appends records "rec-N" and stores position "c", printing
// each acknowledgement, until it is killed.
func killChild(dir string) {
	s, err := Open(dir, Options{MaxSegmentBytes: 64 << 10})
	if err != nil {
		fmt.Println("E", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	next := s.Stats().NextOffset
	for {
		recs := make([][]byte, 1+next%3)
		for i := range recs {
			recs[i] = fmt.Append(nil, "rec-", next+uint64(i))
		}
		first, err := s.Append(recs, time.Now())
		if err != nil {
			fmt.Println("E", err)
			os.Exit(1)
		}
		next = first + uint64(len(recs))
		fmt.Fprintln(w, "A", next-1)
		w.Flush()
		if err := s.StoreOffset("c", next); err != nil {
			os.Exit(1)
		}
		fmt.Fprintln(w, "O", next)
		w.Flush()
	}
}

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ProcessRSS returns the resident set size in bytes of process pid (0 means
// this process), read from the VmRSS line of /proc/<pid>/status. Linux only.
func ProcessRSS(pid int) (uint64, error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseVmRSS(data)
}

// parseVmRSS extracts VmRSS ("VmRSS:\t  12345 kB") from the contents of
// /proc/<pid>/status.
func parseVmRSS(data []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Bytes())
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Bytes())
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a kernel thread or a zombie?)")
}

// raiseNoFile raises this process's soft RLIMIT_NOFILE to the hard limit,
// since every idle connection costs a file descriptor, and returns the
// resulting soft limit.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, err
		}
		lim = want
	}
	return lim.Cur, nil
}

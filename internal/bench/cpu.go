package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, which
// Linux always exposes as 100 regardless of the kernel's internal HZ).
const userHZ = 100

// ProcessCPU returns the user+system CPU seconds consumed so far by process
// pid (0 means this process), read from /proc/<pid>/stat. Linux only.
func ProcessCPU(pid int) (float64, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(data)
}

// parseProcStatCPU extracts utime+stime (fields 14 and 15) from the contents
// of /proc/<pid>/stat. The command name (field 2) is parenthesised and may
// contain spaces or parentheses, so parsing starts after the last ')'.
func parseProcStatCPU(data []byte) (float64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state), so utime (14) is fields[11], stime fields[12].
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat format: %d fields", len(fields)+2)
	}
	utime, err1 := strconv.ParseUint(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc stat format: utime %q stime %q", fields[11], fields[12])
	}
	return float64(utime+stime) / userHZ, nil
}

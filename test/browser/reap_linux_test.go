//go:build linux

package browser

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

// adoptOrphans makes this test process the parent of the helpers that
// chromium leaves behind (zygotes, crashpad handler) when its main
// process exits. Without it they go to PID 1, and not every PID 1 reaps
// (containers and microVMs often run a plain program there): each run
// would leave zombie chromium entries.
func adoptOrphans() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
}

// reapChildren waits up to d for every child of this process to exit and
// reaps it; what is still alive then is killed (by pid: only processes
// this test started, directly or through chromium) and reaped. It must
// run after chromedp has waited for the browser itself, or it could
// steal that exit status. It returns the commands it had to kill.
func reapChildren(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		reapExited()
		kids := children()
		if len(kids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var killed []string
			for pid, cmd := range kids {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					var ws syscall.WaitStatus
					_, _ = syscall.Wait4(pid, &ws, 0, nil)
					killed = append(killed, strconv.Itoa(pid)+" "+cmd)
				}
			}
			reapExited()
			return killed
		}
		time.Sleep(20 * time.Millisecond) // a poll with a deadline: exits send no event we could wait on
	}
}

func reapExited() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// children lists the live or zombie children of this process (pid ->
// command) from /proc.
func children() map[int]string {
	self := os.Getpid()
	out := map[int]string{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // it exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
			out[pid] = s[open+1 : end]
		}
	}
	return out
}

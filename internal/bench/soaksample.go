package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Sample is the broker's resources at one moment of a soak.
type Sample struct {
	At         time.Duration `json:"at"` // since the start
	RSS        uint64        `json:"rss"`
	Goroutines int           `json:"goroutines"`
	FDs        int           `json:"fds"` // -1: unknown
}

// nodeProbe reads the broker's resident set, goroutines and open files:
// from /proc when its pid is known (the RSS and files of the process
// itself), and from the management API's /api/nodes (proc_used is
// Herald's goroutine count; mem_used and fd_used stand in without a pid).
type nodeProbe struct {
	pid    int
	nodes  string // .../api/nodes
	user   string
	pass   string
	client *http.Client
}

func newNodeProbe(httpURL string, pid int) (*nodeProbe, error) {
	u, err := url.Parse(httpURL)
	if err != nil {
		return nil, err
	}
	p := &nodeProbe{pid: pid, client: &http.Client{Timeout: 10 * time.Second}}
	if u.User != nil {
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
		u.User = nil
	}
	u.Path = "/api/nodes"
	p.nodes = u.String()
	return p, nil
}

func (p *nodeProbe) sample(ctx context.Context) (Sample, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.nodes, nil)
	if err != nil {
		return Sample{}, err
	}
	req.SetBasicAuth(p.user, p.pass)
	resp, err := p.client.Do(req)
	if err != nil {
		return Sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("GET %s: %s", p.nodes, resp.Status)
	}
	var nodes []struct {
		MemUsed  uint64 `json:"mem_used"`
		FDUsed   *int   `json:"fd_used"`
		ProcUsed int    `json:"proc_used"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil || len(nodes) == 0 {
		return Sample{}, fmt.Errorf("GET %s: no node (%v)", p.nodes, err)
	}
	n := nodes[0]
	s := Sample{RSS: n.MemUsed, Goroutines: n.ProcUsed, FDs: -1}
	if n.FDUsed != nil {
		s.FDs = *n.FDUsed
	}
	if p.pid > 0 {
		if rss, err := ProcessRSS(p.pid); err == nil {
			s.RSS = rss
		}
		if ents, err := os.ReadDir("/proc/" + strconv.Itoa(p.pid) + "/fd"); err == nil {
			s.FDs = len(ents)
		}
	}
	return s, nil
}

// Verdict says whether a series levelled off over a soak.
type Verdict struct {
	Level  bool   `json:"level"`
	Judged bool   `json:"judged"` // false: too few samples to tell
	Why    string `json:"why"`
}

// levelVerdict compares the mean of the last quarter of the samples
// taken under load (the idle start is not among them) with that of the
// second quarter: a leak climbs on to the end, while what fills once (a
// pool, a cache, the heap before the collector's first cycle, whose goal
// can be far above the live heap) is over within the first quarter of a
// long run. The allowance is slack or frac of the second quarter's mean,
// whichever is more.
func levelVerdict(vals []float64, slack, frac float64, unit func(float64) string) Verdict {
	if len(vals) < 8 {
		return Verdict{Level: true, Why: fmt.Sprintf("%d samples under load: too few to judge, 8 needed (a longer --duration or a shorter --interval)", len(vals))}
	}
	q := len(vals) / 4
	mean := func(xs []float64) float64 {
		var sum float64
		for _, x := range xs {
			sum += x
		}
		return sum / float64(len(xs))
	}
	second, last := mean(vals[q:2*q]), mean(vals[len(vals)-q:])
	allow := max(slack, frac*second)
	if last-second <= allow {
		return Verdict{Level: true, Judged: true, Why: fmt.Sprintf("mean %s in the second quarter, %s in the last (allowed growth %s)", unit(second), unit(last), unit(allow))}
	}
	return Verdict{Judged: true, Why: fmt.Sprintf("climbing: mean %s in the second quarter, %s in the last (allowed growth %s)", unit(second), unit(last), unit(allow))}
}

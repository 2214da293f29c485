package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// herald ctl list services / describe service S: the lookup service of
// RPC services (GET /api/services), with the statistics the broker counts.

// serviceStatsJSON is the "stats" object of a service or an instance.
type serviceStatsJSON struct {
	Requests  uint64            `json:"requests"`
	Replies   map[string]uint64 `json:"replies"`
	Expired   uint64            `json:"expired"`
	AvgMs     float64           `json:"avg_ms"`
	P99Ms     float64           `json:"p99_ms"`
	ErrorRate float64           `json:"error_rate"`
}

type serviceJSON struct {
	Name        string `json:"name"`
	VHost       string `json:"vhost"`
	Description string `json:"description"`
	Instances   []struct {
		ID          string            `json:"id"`
		Version     string            `json:"version"`
		Endpoints   []string          `json:"endpoints"`
		Metadata    map[string]string `json:"metadata"`
		Connection  string            `json:"connection"`
		Prefetch    int               `json:"prefetch_count"`
		Unacked     int               `json:"messages_unacknowledged"`
		Since       time.Time         `json:"since"`
		Stats       serviceStatsJSON  `json:"stats"`
		Description string            `json:"description"`
	} `json:"instances"`
	Stats serviceStatsJSON `json:"stats"`
}

// listServices prints every service the user may list, in every vhost.
func (c *ctlClient) listServices() error {
	var svcs []serviceJSON
	if err := c.call("GET", "/api/services", nil, &svcs); err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(svcs)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "vhost\tname\tinstances\trequests\treplies\texpired\terror_rate\tavg_ms\tp99_ms")
	for _, s := range svcs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.VHost, s.Name, len(s.Instances), statsCells(s.Stats, true))
	}
	return tw.Flush()
}

// describeService prints one service of --vhost and its instances.
func (c *ctlClient) describeService(name string) error {
	var s serviceJSON
	if err := c.call("GET", "/api/services/"+seg(c.o.vhost)+"/"+seg(name), nil, &s); err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(s)
	}
	fmt.Fprintf(c.out, "service      %s\nvhost        %s\n", s.Name, s.VHost)
	if s.Description != "" {
		fmt.Fprintf(c.out, "description  %s\n", s.Description)
	}
	fmt.Fprintf(c.out, "requests     %d delivered, %d expired while queued\n", s.Stats.Requests, s.Stats.Expired)
	fmt.Fprintf(c.out, "replies      %s (error rate %s)\n", replyCounts(s.Stats.Replies), percent(s.Stats.ErrorRate))
	fmt.Fprintf(c.out, "latency      avg %s ms, p99 %s ms (delivery to reply)\n\n", msCell(s.Stats.AvgMs), msCell(s.Stats.P99Ms))
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tversion\tconnection\tsince\tprefetch\tunacked\trequests\treplies\terror_rate\tavg_ms\tp99_ms\tendpoints\tmetadata")
	for _, in := range s.Instances {
		md := make([]string, 0, len(in.Metadata))
		for k, v := range in.Metadata {
			md = append(md, k+"="+v)
		}
		sort.Strings(md)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", in.ID, in.Version, in.Connection, in.Since.Format(time.RFC3339),
			in.Prefetch, in.Unacked, statsCells(in.Stats, false), strings.Join(in.Endpoints, ","), strings.Join(md, ","))
	}
	return tw.Flush()
}

// statsCells are the tab-separated statistics columns of a row.
func statsCells(st serviceStatsJSON, withExpired bool) string {
	cells := []string{fmt.Sprint(st.Requests), replyCounts(st.Replies)}
	if withExpired {
		cells = append(cells, fmt.Sprint(st.Expired))
	}
	cells = append(cells, percent(st.ErrorRate), msCell(st.AvgMs), msCell(st.P99Ms))
	return strings.Join(cells, "\t")
}

// replyCounts writes {"OK": 5, "NOT_FOUND": 1} as OK=5,NOT_FOUND=1.
func replyCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
func msCell(f float64) string  { return fmt.Sprintf("%.2f", f) }

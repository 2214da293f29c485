package main

import (
	"fmt"
	"strings"
)

// herald ctl cluster ...: the cluster's nodes and their Raft state, and
// removing a node, over the management API of any node.

const ctlClusterUsage = `  cluster status                          every node: running, Raft state, term, log indexes, lag; exit 1 if one is down
  cluster remove-node NAME                take a node out of the cluster (it is gone for good; a new
                                          node with an empty data dir can join again)
`

// clusterColumns are the columns of herald ctl cluster status.
var clusterColumns = []string{"name", "running", "raft_state", "raft_term", "raft_last_index", "raft_applied_index", "raft_lag", "cluster_addr"}

// cluster runs `herald ctl cluster ...`; handled is false for other words.
func (c *ctlClient) cluster(w []string) (handled bool, err error) {
	if w[0] != "cluster" {
		return false, nil
	}
	switch w[1] {
	case "status":
		if len(w) != 2 {
			return true, usageError("usage: herald ctl cluster status")
		}
		var rows []map[string]any
		if err := c.call("GET", "/api/nodes", nil, &rows); err != nil {
			return true, err
		}
		if err := c.table(rows, clusterColumns); err != nil {
			return true, err
		}
		var down []string
		for _, r := range rows {
			if r["running"] != true {
				down = append(down, fmt.Sprint(r["name"]))
			}
		}
		if len(down) > 0 { // for scripts: exit 1, as list alarms does
			return true, fmt.Errorf("not running: %s", strings.Join(down, ", "))
		}
		return true, nil
	case "remove-node":
		if len(w) != 3 {
			return true, usageError("usage: herald ctl cluster remove-node NAME")
		}
		return true, c.done("DELETE", "/api/nodes/"+seg(w[2]), nil, "node "+w[2]+" removed from the cluster")
	}
	return true, usageError("usage: herald ctl cluster status | cluster remove-node NAME")
}

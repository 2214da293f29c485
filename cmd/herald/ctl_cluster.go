package main

// herald ctl cluster ...: the cluster's nodes and their Raft state, and
// removing a node, over the management API of any node.

const ctlClusterUsage = `  cluster status                          every node: running, Raft state, term, log indexes, lag
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
		return true, c.table(rows, clusterColumns)
	case "remove-node":
		if len(w) != 3 {
			return true, usageError("usage: herald ctl cluster remove-node NAME")
		}
		return true, c.done("DELETE", "/api/nodes/"+seg(w[2]), nil, "node "+w[2]+" removed from the cluster")
	}
	return true, usageError("usage: herald ctl cluster status | cluster remove-node NAME")
}

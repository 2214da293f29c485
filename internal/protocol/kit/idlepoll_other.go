//go:build !linux

package kit

import "errors"

// Without epoll no connection is parked: NewParker returns nil and
// handlers keep a reader goroutine per connection.
const pollSupported = false

const pollBatch = 1

type pollSet struct{}

func newPollSet() (*pollSet, error) { return nil, errors.New("no idle poller on this system") }

func (*pollSet) arm(int, uint64, bool) error { return errors.New("no idle poller on this system") }
func (*pollSet) remove(int)                  {}
func (*pollSet) wait(ids []uint64) ([]uint64, error) {
	return ids, errors.New("no idle poller on this system")
}
func (*pollSet) interrupt() {}
func (*pollSet) close()     {}

package kit

import (
	"golang.org/x/sys/unix"
)

const pollSupported = true

// pollBatch is how many events one epoll_wait returns at most.
const pollBatch = 128

// pollSet is the epoll instance of an IdlePoller, with an eventfd that
// interrupts its wait on Close. Events carry the Parker's id, never the
// descriptor number, so an event that races with a close (the number
// reused by a new socket) finds no parked connection and is dropped.
type pollSet struct {
	ep, ev int
	events [pollBatch]unix.EpollEvent
}

func newPollSet() (*pollSet, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ev, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	// The eventfd has id 0, which no Parker has.
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ev, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(ev)
		unix.Close(ep)
		return nil, err
	}
	return &pollSet{ep: ep, ev: ev}, nil
}

// arm waits for fd to become readable (or hung up) once: one-shot, so a
// burst of bytes wakes the connection once, and the socket stays in the
// set, disabled, until armed again (MOD, cheaper than ADD).
func (ps *pollSet) arm(fd int, id uint64, added bool) error {
	e := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if added {
		err := unix.EpollCtl(ps.ep, unix.EPOLL_CTL_MOD, fd, &e)
		if err != unix.ENOENT {
			return err
		}
	}
	err := unix.EpollCtl(ps.ep, unix.EPOLL_CTL_ADD, fd, &e)
	if err == unix.EEXIST {
		err = unix.EpollCtl(ps.ep, unix.EPOLL_CTL_MOD, fd, &e)
	}
	return err
}

// remove takes fd out of the set.
func (ps *pollSet) remove(fd int) {
	_ = unix.EpollCtl(ps.ep, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait blocks until some parked sockets are ready and appends their ids;
// an interrupt returns with none.
func (ps *pollSet) wait(ids []uint64) ([]uint64, error) {
	for {
		n, err := unix.EpollWait(ps.ep, ps.events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ids, err
		}
		for _, e := range ps.events[:n] {
			id := uint64(uint32(e.Fd)) | uint64(uint32(e.Pad))<<32
			if id == 0 {
				return ids, nil // interrupt
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
}

// interrupt ends a wait in progress (Close).
func (ps *pollSet) interrupt() {
	var one = [8]byte{1}
	_, _ = unix.Write(ps.ev, one[:])
}

func (ps *pollSet) close() {
	unix.Close(ps.ev)
	unix.Close(ps.ep)
}

//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// closedByPeer tells whether an idle connection has been closed (or written
// to) by the upstream, without blocking or consuming anything: one
// recv(MSG_PEEK|MSG_DONTWAIT). An idle HTTP/1.1 connection must have
// nothing to read; EOF or any byte (a close_notify alert, a 408) means the
// upstream is done with it.
func closedByPeer(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// nil: end of stream or unexpected bytes; EAGAIN: open and quiet.
		closed = rerr == nil || rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK && rerr != syscall.EINTR
		return true // never wait for readiness
	})
	return closed || err != nil
}

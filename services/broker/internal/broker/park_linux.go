package broker

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// poller is the process's epoll instance for parked connections (park.go), with one goroutine
// reading its events. Sockets are armed one-shot for input: each readiness event wakes its
// connection once, and the next park arms it again.
//
// The epoll instance is itself non-blocking and waited for in the Go runtime's poller (an epoll
// descriptor is readable while it has events), so a parked connection's input is noticed in the
// same scheduling round as any other socket's, and no thread sits in epoll_wait. Waking in a
// separate thread let other connections' packets that arrived later be handled first.
type poller struct {
	epfd int
	rc   syscall.RawConn // epfd, registered with the runtime's poller
	mu   sync.Mutex
	// conns maps a registered socket to its connection. A closed socket leaves the epoll
	// instance by itself; its entry goes at the connection's finish (remove).
	conns map[int32]*client
}

var (
	pollerOnce sync.Once
	thePoller  *poller
	pollerFile *os.File
)

// connPoller returns the process's poller, started at first use; nil if epoll is unavailable.
func connPoller() *poller {
	pollerOnce.Do(func() {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		if err := syscall.SetNonblock(epfd, true); err != nil {
			_ = syscall.Close(epfd)
			return
		}
		f := os.NewFile(uintptr(epfd), "broker-epoll") // non-blocking: pollable
		rc, err := f.SyscallConn()
		if err != nil {
			_ = f.Close()
			return
		}
		thePoller = &poller{epfd: epfd, rc: rc, conns: make(map[int32]*client)}
		pollerFile = f // kept open for the life of the process
		go thePoller.loop()
	})
	return thePoller
}

// pollEvents are the events a parked socket is armed for: input, the peer's FIN, errors and hang-ups
// (the last two are always reported).
const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers c's socket, not yet armed for anything but errors: arm does that when it parks.
func (p *poller) add(c *client) error {
	return c.control(func(fd int32) error {
		p.mu.Lock()
		p.conns[fd] = c
		p.mu.Unlock()
		c.pollFd = fd
		ev := syscall.EpollEvent{Events: syscall.EPOLLONESHOT, Fd: fd}
		if e := epollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); e != 0 {
			p.remove(c)
			return e
		}
		return nil
	})
}

// arm asks for one wake-up when c's socket becomes readable (at once if it already is).
func (p *poller) arm(c *client) error {
	return c.control(func(fd int32) error {
		ev := syscall.EpollEvent{Events: pollEvents, Fd: fd}
		if e := epollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev); e != 0 {
			return e
		}
		return nil
	})
}

// remove forgets c. Its socket is closed by now, which took it out of the epoll instance.
func (p *poller) remove(c *client) {
	p.mu.Lock()
	if p.conns[c.pollFd] == c {
		delete(p.conns, c.pollFd)
	}
	p.mu.Unlock()
}

func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	woken := make([]*client, 0, len(events))
	var n int
	var werr error
	// wait takes the ready events without blocking; false (nothing ready) waits in the runtime's
	// poller for the next. The runtime watches the epoll descriptor edge-triggered, so the loop
	// takes events until none are left before it waits again.
	wait := func(fd uintptr) bool {
		for {
			var e syscall.Errno
			n, e = epollWaitNow(fd, events)
			if e != syscall.EINTR {
				if e != 0 {
					werr = e
				}
				return n > 0 || werr != nil
			}
		}
	}
	for {
		if err := p.rc.Read(wait); err != nil || werr != nil {
			panic(fmt.Sprintf("broker: epoll_wait: %v %v", err, werr)) // a bad descriptor or buffer: a bug
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if c := p.conns[ev.Fd]; c != nil {
				woken = append(woken, c)
			}
		}
		p.mu.Unlock()
		for i, c := range woken {
			c.wake(wakeInput)
			woken[i] = nil
		}
		woken = woken[:0]
	}
}

// epollCtl and epollWaitNow never block, so they are made as raw system calls: syscall.EpollCtl
// and syscall.EpollWait announce a call that may block to the runtime, which wakes its monitor
// thread (see package sockio); at a park and a wake-up per message that was most of the broker's
// CPU at a paced thousand messages a second.
func epollCtl(epfd, op int, fd int32, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// epollWaitNow is epoll_pwait with a zero timeout and no signal mask: the events ready now.
func epollWaitNow(epfd uintptr, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

// control runs f with the connection's socket descriptor, which cannot be closed (and its number
// reused) while f runs.
func (c *client) control(f func(fd int32) error) error {
	var ferr error
	if err := c.rd.raw.Control(func(fd uintptr) { ferr = f(int32(fd)) }); err != nil {
		return err
	}
	return ferr
}

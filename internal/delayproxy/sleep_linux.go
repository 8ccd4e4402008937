package delayproxy

import (
	"syscall"
	"time"
)

// sleepPrecisely blocks the calling thread in nanosleep(2), which wakes
// within the kernel's timer slack (50 µs by default) instead of the
// runtime poller's millisecond. The runtime hands the thread's P to other
// goroutines meanwhile.
func sleepPrecisely(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}

//go:build !linux

package delayproxy

import "time"

// sleepPrecisely is time.Sleep where nanosleep(2) is not wired up.
func sleepPrecisely(d time.Duration) { time.Sleep(d) }

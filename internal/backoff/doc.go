// Package backoff owns the pauses between retries: a capped exponential
// Policy with jitter, context-aware sleeps, and a Retry loop that stops on
// errors marked Permanent.
//
// Jitter spreads the retries of callers that failed together (writers
// aborted by the same conflict, clients that lost the same leader) so that
// they do not collide again on the next attempt.
package backoff

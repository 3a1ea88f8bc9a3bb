package broker

import "time"

// tokenBucket limits one client's publish rate. It is used by the client's reader goroutine only.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	if burst < 1 {
		burst = max(1, int(rate))
	}
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes one token. It returns 0 when one was available, else how long until one will be. With
// owe, the token is taken anyway, from the future (the caller then waits that long); without, a
// refused message costs nothing.
func (b *tokenBucket) take(now time.Time, owe bool) time.Duration {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	need := 1 - b.tokens
	if owe {
		b.tokens--
	}
	return time.Duration(need / b.rate * float64(time.Second))
}

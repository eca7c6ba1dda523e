package strategy

import "time"

// RecordFunc receives a decided frame with the outside state its decision
// saw and the outcome, for replay (the replay recorder's Record method). It
// is called on the stream's goroutine and must never block. A nil one
// records nothing.
type RecordFunc func(program string, frame []byte, at time.Time, env Env, outcome string)

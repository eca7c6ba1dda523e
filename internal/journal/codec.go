package journal

import (
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Times are stored as Unix nanoseconds, which covers 1677..2262.
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// nanos encodes a time to store. The zero time is stored as NULL (nil) so
// that it reads back as the zero time, not as 1970.
func nanos(t time.Time, field string) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minNanoTime) || t.After(maxNanoTime) {
		return nil, fmt.Errorf("%s %s is outside the storable range", field, t.Format(time.RFC3339Nano))
	}
	return t.UnixNano(), nil
}

// requiredNanos encodes a time that must be set; zero becomes now.
func requiredNanos(t time.Time, field string) (int64, time.Time, error) {
	if t.IsZero() {
		t = time.Now()
	}
	v, err := nanos(t, field)
	if err != nil {
		return 0, t, err
	}
	return v.(int64), t.UTC(), nil
}

// sinceNanos encodes a filter bound; out-of-range bounds are clamped, since
// they still mean "from the beginning" or "nothing".
func sinceNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// fromNanos decodes a stored time: NULL is the zero time, anything else UTC.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// parseDecimal decodes a stored decimal. A value that does not parse is an
// error naming the table, row and column (the read that met it adds
// "journal: <what>:"): it is never read as zero.
func parseDecimal(s, table string, id int64, column string) (decimal.Decimal, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%s row %d: %s %q is not a decimal: %w", table, id, column, s, err)
	}
	return d, nil
}

// inList returns "?,?,?" for n placeholders.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// nonNil makes a nil byte slice an empty one, so that it binds as a
// zero-length BLOB rather than NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

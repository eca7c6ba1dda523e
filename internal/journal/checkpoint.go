package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// Background WAL checkpoints. The write connections never checkpoint
// (wal_autocheckpoint=0): SQLite's automatic checkpoint runs inside the
// commit that crosses 1,000 WAL pages, fsyncing the WAL and the database file
// on the accept path, several times a second under SPEC 8's load. Instead the
// checkpointer goroutine checkpoints on its own connection every
// checkpointEvery (checkpointAndRewind), holding the writer slot only to copy
// what was appended while it copied the rest; the next writer then starts
// the WAL over from its beginning.
//
// A passive checkpoint cannot finish while a reader still uses an old
// snapshot (a long Frames walk, a replay process beside the daemon). So that
// the WAL cannot grow without bound, once its file is past the limit the
// checkpointer takes the writer slot and runs a TRUNCATE checkpoint, which
// waits up to truncateBusyMillis for readers and empties the file; if that
// fails too it logs an error and tries again after truncateRetry.

const (
	// checkpointEvery: how often the WAL is copied into the database file
	// and rewound. Each tick holds the writer slot for one small catch-up
	// checkpoint (two fsyncs of little data) and costs the next writer one
	// fsync of the new WAL header; SQLite's own autocheckpoint did about ten
	// full checkpoints a second on the accept path under SPEC 8's load. A
	// longer tick means more dirty data per fsync: with 1–2 s ticks (and no
	// rewind) the writer stalled for tens of ms behind them.
	checkpointEvery = 200 * time.Millisecond
	// walLimitBytes: the WAL file size past which a TRUNCATE checkpoint is
	// forced. 64 MiB is several seconds of SPEC 8's load, so only a
	// checkpoint kept from finishing gets there.
	walLimitBytes = 64 << 20
	// truncateBusyMillis bounds how long a TRUNCATE checkpoint waits for
	// readers while it holds the writer slot (and so stalls accepts).
	truncateBusyMillis = 200
	// truncateRetry spaces TRUNCATE attempts that keep failing, so a reader
	// that never lets go stalls the writer at most truncateBusyMillis per
	// truncateRetry.
	truncateRetry = 10 * time.Second
)

func (j *Journal) checkpointLoop() {
	defer j.bg.Done()
	t := time.NewTicker(j.ckEvery)
	defer t.Stop()
	var lastTruncate time.Time
	for {
		select {
		case <-t.C:
		case <-j.closed:
			return
		}
		j.checkpointAndRewind()
		fi, err := os.Stat(j.path + "-wal")
		if err != nil || fi.Size() <= j.ckLimit || time.Since(lastTruncate) < j.ckRetry {
			continue
		}
		lastTruncate = time.Now()
		select {
		case j.wsem <- struct{}{}:
		case <-j.closed:
			return
		}
		busy, _, err := j.checkpoint("TRUNCATE")
		<-j.wsem
		if err == nil && busy {
			err = errors.New("readers kept it from finishing")
		}
		if err != nil {
			j.log.Error("journal: WAL past its limit and a truncating checkpoint failed; retrying later",
				zap.Int64("wal_bytes", fi.Size()), zap.Int64("limit_bytes", j.ckLimit),
				zap.Duration("retry_in", j.ckRetry), zap.Error(err))
			continue
		}
		j.stats.truncates.Add(1)
		j.log.Warn("journal: WAL was past its limit; truncated it",
			zap.Int64("wal_bytes", fi.Size()), zap.Int64("limit_bytes", j.ckLimit))
	}
}

// checkpointAndRewind copies the WAL into the database file so that the next
// writer starts the WAL over. A passive checkpoint copies almost everything
// without the writer slot, but under continuous writes never catches up:
// frames are appended while it copies, so the WAL is never rewound, and the
// database file is only fsynced by a checkpoint that caught up. So the bulk
// is copied and the WAL fsynced without the writer slot, and then a second
// passive checkpoint under the writer slot copies and fsyncs only what was
// appended meanwhile, a few ms at most.
func (j *Journal) checkpointAndRewind() {
	if _, _, err := j.checkpoint("PASSIVE"); err != nil {
		j.log.Warn("journal: passive WAL checkpoint failed", zap.Error(err))
		return
	}
	// Only the WAL is synced from here, never the database file: closing any
	// descriptor of a file drops every POSIX lock this process holds on it,
	// and SQLite's shared lock on the database file is what tells another
	// process the journal is in use (without it, a sqlite3 shell closing the
	// file would checkpoint and delete the live WAL). SQLite holds no lock on
	// the WAL file itself.
	if err := syncFile(j.path + "-wal"); err != nil {
		j.log.Warn("journal: sync before checkpoint failed", zap.String("file", j.path+"-wal"), zap.Error(err))
		return
	}
	select {
	case j.wsem <- struct{}{}:
	case <-j.closed:
		return
	}
	busy, left, err := j.checkpoint("PASSIVE")
	<-j.wsem
	switch {
	case err != nil:
		j.log.Warn("journal: passive WAL checkpoint failed", zap.Error(err))
	case busy || left > 0:
		// A reader on an old snapshot: normal for a while; the WAL limit
		// below bounds it.
		j.log.Debug("journal: passive WAL checkpoint incomplete", zap.Bool("busy", busy), zap.Int("frames_left", left))
	default:
		j.stats.checkpoints.Add(1)
	}
}

// syncFile fsyncs the file at path, whose dirty pages a checkpoint would
// otherwise fsync while holding the writer slot. Never call it on the
// database file (see checkpointAndRewind).
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// checkpoint runs PRAGMA wal_checkpoint(mode) on the checkpoint connection
// and reports whether it was blocked and how many WAL frames it left
// uncopied.
func (j *Journal) checkpoint(mode string) (busy bool, left int, err error) {
	var b, walFrames, copied int
	if err := j.ck.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")").
		Scan(&b, &walFrames, &copied); err != nil {
		return false, 0, fmt.Errorf("checkpoint(%s): %w", mode, err)
	}
	return b != 0, max(walFrames-copied, 0), nil
}

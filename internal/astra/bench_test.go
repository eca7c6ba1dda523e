package astra_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"treasuryd/internal/astra"
)

// benchRecords is the size of the generated history (SPEC 8: reconciliation
// of a 1,000,000-transaction history).
const benchRecords = 1_000_000

// writeHistory writes n transaction records to w as they are generated; the
// list never exists whole in memory on either side.
func writeHistory(w http.ResponseWriter, n int) {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("[")
	var rec []byte
	for i := range n {
		rec = rec[:0]
		if i > 0 {
			rec = append(rec, ",\n"...)
		}
		rec = append(rec, `{"displayId":"tx-`...)
		rec = strconv.AppendInt(rec, int64(i), 10)
		rec = append(rec, `","instrumentId":"550e8400-e29b-41d4-a716-446655440001","symbol":"BTC","amount":"`...)
		rec = strconv.AppendInt(rec, int64(i%9973), 10)
		rec = append(rec, `.00012345","debitFrom":"550e8400-e29b-41d4-a716-446655440002","creditTo":"550e8400-e29b-41d4-a716-446655440000","notes":"Deposit","createdAt":"2024-01-15T10:30:00.123Z","idemKey":"deposit_`...)
		rec = strconv.AppendInt(rec, int64(i), 10)
		rec = append(rec, `","type":"deposit","tradeDisplayId":null}`...)
		bw.Write(rec)
	}
	bw.WriteString("]")
	bw.Flush()
}

// BenchmarkTransactionsStream streams a generated 1,000,000-record history
// from a loopback desk that writes it incrementally, and reports records/s
// and the peak heap seen while streaming (sampled every 5 ms): the peak must
// stay flat, far below the ~330 MB the list would take held whole.
func BenchmarkTransactionsStream(b *testing.B) {
	d := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeHistory(w, benchRecords) }))
	b.Cleanup(d.Close)
	c, err := astra.New(astra.Options{BaseURL: d.URL + "/v2", APIKey: testKey, AccountID: testAccount, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}

	var peakInuse, peakSys atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peakInuse.Load() {
					peakInuse.Store(ms.HeapInuse)
				}
				if ms.HeapSys > peakSys.Load() {
					peakSys.Store(ms.HeapSys)
				}
			}
		}
	})

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		n := 0
		err := c.Transactions(context.Background(), func(tx astra.Transaction) error {
			n++
			return nil
		})
		if err != nil || n != benchRecords {
			b.Fatalf("streamed %d records, %v", n, err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()

	b.ReportMetric(float64(b.N*benchRecords)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(peakInuse.Load())/(1<<20), "peak-HeapInuse-MiB")
	b.ReportMetric(float64(peakSys.Load())/(1<<20), "peak-HeapSys-MiB")
	// Flat: a few MiB of decoder buffer and garbage, never the list.
	if peakInuse.Load() > 64<<20 {
		b.Errorf("peak HeapInuse %d MiB: the list is being held in memory", peakInuse.Load()>>20)
	}
}

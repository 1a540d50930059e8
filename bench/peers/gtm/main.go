// gtm-bench: the gtm (Go, github.com/rwynn/gtm/v2) contender of gtom's benchmark harness.
//
// It speaks bench/peers/PROTOCOL.md:
//
//	gtm-bench --uri URI --mode oplog|changes|direct --db DB --expect N [--after SECS.INC] [--segments K]
//
// and prints one JSON object as the last line of stdout. Everything else (gtm's own log
// lines included) goes to stderr.
//
// Extra flags for experiments (the harness does not pass them):
//
//	--ordering oplog|namespace|document|anyorder   gtm.Options.Ordering in oplog mode (default oplog)
//	--workers N                                    gtm.Options.WorkerCount (forced to 1 by gtm under oplog ordering)
//	--distinct                                     debug: count distinct (ts, ns, _id) too, and wait 1 s
//	                                               after the N-th raw event to catch late duplicates
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rwynn/gtm/v2"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// gtm's direct-read splitter gives up splitting (one cursor) when count/(splits+1) is
// below this many documents (the constant minSegmentSize in gtm.go v2.1.4).
const gtmMinSegmentSize = 5000

type result struct {
	Count int     `json:"count"`
	Start float64 `json:"start"`
	First float64 `json:"first"`
	Last  float64 `json:"last"`
	Note  string  `json:"note,omitempty"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gtm-bench: "+format+"\n", args...)
	os.Exit(2)
}

func unsupported(reason string) {
	b, _ := json.Marshal(map[string]string{"unsupported": reason})
	fmt.Println(string(b))
	os.Exit(0)
}

// parseAfter reads "SECS.INC" (INC is an integer, not a fraction: "1764331200.17" is inc 17).
func parseAfter(s string) (primitive.Timestamp, error) {
	parts := strings.SplitN(s, ".", 2)
	secs, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil {
		return primitive.Timestamp{}, fmt.Errorf("bad --after %q: %v", s, err)
	}
	var inc uint64
	if len(parts) == 2 && parts[1] != "" {
		if inc, err = strconv.ParseUint(parts[1], 10, 32); err != nil {
			return primitive.Timestamp{}, fmt.Errorf("bad --after %q: %v", s, err)
		}
	}
	return primitive.Timestamp{T: uint32(secs), I: uint32(inc)}, nil
}

func parseOrdering(s string) (gtm.OrderingGuarantee, error) {
	switch strings.ToLower(s) {
	case "oplog":
		return gtm.Oplog, nil
	case "namespace":
		return gtm.Namespace, nil
	case "document":
		return gtm.Document, nil
	case "anyorder", "any":
		return gtm.AnyOrder, nil
	}
	return gtm.Oplog, fmt.Errorf("unknown --ordering %q", s)
}

func orderingName(o gtm.OrderingGuarantee) string {
	switch o {
	case gtm.Oplog:
		return "Oplog"
	case gtm.Namespace:
		return "Namespace"
	case gtm.Document:
		return "Document"
	case gtm.AnyOrder:
		return "AnyOrder"
	}
	return strconv.Itoa(int(o))
}

// collectionsOf lists the plain collections (no views, no system.*) of db, sorted by name.
func collectionsOf(client *mongo.Client, db string) ([]string, error) {
	filter := bson.M{"type": "collection"}
	names, err := client.Database(db).ListCollectionNames(context.Background(), filter)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, "system.") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// predictedSegments mirrors gtm v2.1.4's DirectReadPaged rule: with SplitMax <= 0, or a
// segment size count/(SplitMax+1) under 5,000 documents, it reads with one cursor;
// otherwise it cuts SplitMax+1 ranges (fewer if it runs out of documents).
func predictedSegments(count int64, splitMax int32) int64 {
	if splitMax <= 0 || count == 0 {
		return 1
	}
	size := count / int64(splitMax+1)
	if size < gtmMinSegmentSize {
		return 1
	}
	segs := count/size + 1
	if segs > int64(splitMax)+1 {
		segs = int64(splitMax) + 1
	}
	return segs
}

func main() {
	uri := flag.String("uri", "", "MongoDB URI")
	mode := flag.String("mode", "", "oplog | changes | direct")
	db := flag.String("db", "", "database whose events count")
	expect := flag.Int("expect", 0, "stop after this many counted events")
	afterS := flag.String("after", "", "SECS.INC: oplog/changes start strictly after this")
	segments := flag.Int("segments", 1, "direct mode: ranges to read in parallel")
	orderingS := flag.String("ordering", "oplog", "gtm ordering in oplog mode (experiments)")
	workers := flag.Int("workers", 1, "gtm WorkerCount (experiments; gtm forces 1 under Oplog ordering)")
	distinct := flag.Bool("distinct", false, "debug: also count distinct (ts, ns, _id)")
	flag.Parse()

	if *uri == "" || *db == "" || *expect <= 0 {
		fail("--uri, --db and a positive --expect are required")
	}
	if *mode != "oplog" && *mode != "changes" && *mode != "direct" {
		fail("--mode must be oplog, changes or direct, not %q", *mode)
	}
	var after primitive.Timestamp
	if *mode != "direct" {
		if *afterS == "" {
			fail("--after SECS.INC is required in %s mode", *mode)
		}
		var err error
		if after, err = parseAfter(*afterS); err != nil {
			fail("%v", err)
		}
	}
	if *segments < 1 {
		*segments = 1
	}
	ordering, err := parseOrdering(*orderingS)
	if err != nil {
		fail("%v", err)
	}

	// Every option that matters, set explicitly (gtm's README defaults differ from its code;
	// the values below are the ones its code's DefaultOptions()/SetDefaults() would give
	// unless noted).
	opts := &gtm.Options{
		OpLogDatabaseName:   "local",
		OpLogCollectionName: "oplog.rs",
		ChannelSize:         2048,
		BufferSize:          50,
		BufferDuration:      75 * time.Millisecond,
		Ordering:            gtm.Oplog,
		WorkerCount:         1,
		MaxAwaitTime:        0,
		UpdateDataAsDelta:   false, // gtm's default: updates carry the whole document
		DirectReadConcur:    0,
		DirectReadSplitMax:  -1,
		DirectReadNoTimeout: false,
		DirectReadBounded:   false,
		Log:                 log.New(os.Stderr, "gtm ", log.LstdFlags),
	}
	dbName := *db
	inDB := func(op *gtm.Op) bool { return op.GetDatabase() == dbName }
	var note []string

	// Time 0: right before the driver client is made (mongo.Connect does no I/O of its own;
	// the first round trips are gtm's) and gtm starts.
	t0 := time.Now()
	client, err := mongo.Connect(context.Background(), options.Client().ApplyURI(*uri))
	if err != nil {
		fail("connect: %v", err)
	}

	switch *mode {
	case "oplog":
		opts.Ordering = ordering
		opts.WorkerCount = *workers
		if ordering == gtm.Oplog {
			opts.WorkerCount = 1 // what gtm's SetDefaults forces; more would duplicate ops
		}
		ts := after
		// gtm queries local.oplog.rs with ts $gt After(): strictly after --after.
		opts.After = func(*mongo.Client, *gtm.Options) (primitive.Timestamp, error) { return ts, nil }
		opts.NamespaceFilter = inDB
		opts.OpLogDisabled = false
		note = append(note, fmt.Sprintf(
			"gtm v2.1.4 oplog tail (tailable-await find ts>$after on local.oplog.rs, op in c/i/u/d, no fromMigrate), NamespaceFilter db==%s;"+
				" every op passes through gtm's fetch worker(s) (UpdateDataAsDelta=false, Ordering=%s)",
			dbName, orderingName(opts.Ordering)))
		note = append(note, "v2.1.4 treats a $v:2 diff update (no $set/$unset key) as a replacement: it does not re-fetch it, op.Doc is the raw diff (v2.1.5 re-fetches; the module proxy here serves only up to v2.1.4)")
		note = append(note, "oplog mode drops transactions (applyOps) and renames")
	case "changes":
		startAt := primitive.Timestamp{T: after.T, I: after.I + 1}
		// gtm passes After() as the change stream's startAtOperationTime (when T > 0).
		opts.After = func(*mongo.Client, *gtm.Options) (primitive.Timestamp, error) { return startAt, nil }
		opts.ChangeStreamNs = []string{dbName} // a bare db name: gtm calls Database(db).Watch
		opts.NamespaceFilter = inDB
		opts.OpLogDisabled = true
		note = append(note, fmt.Sprintf(
			"gtm v2.1.4 change stream: ChangeStreamNs=[%s] (database watch), startAtOperationTime=%d.%d via After; gtm always asks fullDocument=updateLookup (the server looks up updated docs), no fetch workers",
			dbName, startAt.T, startAt.I))
	case "direct":
		cols, err := collectionsOf(client, dbName)
		if err != nil {
			fail("list collections of %s: %v", dbName, err)
		}
		if len(cols) == 0 {
			fail("database %s has no collections", dbName)
		}
		for _, c := range cols {
			opts.DirectReadNs = append(opts.DirectReadNs, dbName+"."+c)
		}
		opts.OpLogDisabled = true
		// K segments = SplitMax+1 ranges; SplitMax 0 would be replaced by gtm's default 9,
		// so K=1 uses -1 (no splitting, one cursor).
		if *segments > 1 {
			opts.DirectReadSplitMax = int32(*segments - 1)
		} else {
			opts.DirectReadSplitMax = -1
		}
		opts.DirectReadConcur = len(cols) // all collections at once (gtm's 0 = unlimited)
		opts.DirectReadFilter = nil
		note = append(note, fmt.Sprintf(
			"gtm v2.1.4 direct reads of %d collection(s) %v, DirectReadSplitMax=%d (split by repeated aggregate $match/$sort _id/$skip count/(SplitMax+1)/$limit 1), each segment one find cursor with batchSize 2MB/avgObjSize",
			len(cols), cols, opts.DirectReadSplitMax))
	}

	note = append(note, fmt.Sprintf(
		"options: ChannelSize=%d BufferSize=%d BufferDuration=%s Ordering=%s WorkerCount=%d UpdateDataAsDelta=%v MaxAwaitTime=%s DirectReadConcur=%d DirectReadSplitMax=%d DirectReadBounded=%v OpLogDisabled=%v",
		opts.ChannelSize, opts.BufferSize, opts.BufferDuration, orderingName(opts.Ordering), opts.WorkerCount,
		opts.UpdateDataAsDelta, opts.MaxAwaitTime, opts.DirectReadConcur, opts.DirectReadSplitMax,
		opts.DirectReadBounded, opts.OpLogDisabled))

	ctx := gtm.Start(client, opts) // non-nil options: gtm runs SetDefaults on them

	var count, raw int
	var first, last float64
	seen := map[string]struct{}{}
	var deadline <-chan time.Time
	for {
		select {
		case err := <-ctx.ErrC:
			if err != nil {
				fail("gtm error after %d events: %v", count, err)
			}
		case op := <-ctx.OpC:
			if op == nil || !inDB(op) || !(op.IsInsert() || op.IsUpdate() || op.IsDelete()) {
				continue
			}
			now := time.Since(t0).Seconds()
			raw++
			if *distinct {
				var key string
				if op.IsSourceDirect() {
					key = fmt.Sprintf("%s|%v", op.Namespace, op.Id)
				} else {
					key = fmt.Sprintf("%d.%d|%s|%v", op.Timestamp.T, op.Timestamp.I, op.Namespace, op.Id)
				}
				if _, dup := seen[key]; dup {
					continue
				}
				seen[key] = struct{}{}
			}
			if count >= *expect {
				continue // debug grace period: only counting late raw duplicates
			}
			count++
			if count == 1 {
				first = now
			}
			if count == *expect {
				last = now
				if !*distinct {
					finish(client, *mode, opts, count, first, last, note, *segments, 0)
				}
				deadline = time.After(time.Second)
			}
		case <-deadline:
			finish(client, *mode, opts, count, first, last, note, *segments, raw)
		}
	}
}

func finish(client *mongo.Client, mode string, opts *gtm.Options, count int, first, last float64,
	note []string, segments int, raw int) {
	// After the clock stopped: describe how gtm split the direct reads.
	if mode == "direct" {
		var parts []string
		for _, ns := range opts.DirectReadNs {
			p := strings.SplitN(ns, ".", 2)
			n, err := client.Database(p[0]).Collection(p[1]).EstimatedDocumentCount(context.Background())
			if err != nil {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: %d docs -> %d segment(s)", ns, n, predictedSegments(n, opts.DirectReadSplitMax)))
		}
		rule := "DirectReadSplitMax<=0: one cursor per collection"
		if opts.DirectReadSplitMax > 0 {
			rule = fmt.Sprintf("gtm splits a collection only when count/%d >= %d docs", opts.DirectReadSplitMax+1, gtmMinSegmentSize)
		}
		note = append(note, fmt.Sprintf("asked --segments %d; %s, so: %s (it also runs collStats per collection first)",
			segments, rule, strings.Join(parts, "; ")))
	}
	if raw > 0 {
		note = append(note, fmt.Sprintf("debug --distinct: %d raw events (incl. duplicates) seen by %.3fs+1s grace for %d distinct", raw, last, count))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result{Count: count, Start: 0, First: first, Last: last, Note: strings.Join(note, ". ")}); err != nil {
		fail("write result: %v", err)
	}
	os.Exit(0)
}

package harness

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-io/bulkhead/controlplane/api/bulkheadv1"
)

// The "sql" group: PostgreSQL under pgbench -S and MariaDB under sysbench
// oltp_read_only, both servers in the server's namespace with their data
// under the run's directory.
const (
	pgPort      = 5432
	mariadbPort = 3306
	// sqlDB is the database both servers hold the benchmark's tables in.
	sqlDB = "bench"
	// sqlUser and sqlPassword are MariaDB's account for the client;
	// PostgreSQL trusts the lab's addresses for its postgres role.
	sqlUser     = "bench"
	sqlPassword = "bench-secret"
	// sqlClients is the connections of both load tools.
	sqlClients = 16
	// sysbenchRows is the size of sysbench's one table, sbtest1.
	sysbenchRows = 10_000
	// pgbenchSampling is the share of pgbench's transactions logged with
	// their latency (--log --sampling-rate), for the percentiles.
	pgbenchSampling = "0.02"
	// pgbenchSamplingPct is pgbenchSampling for the report.
	pgbenchSamplingPct = "2%"
	// The scenarios' names.
	pgbenchScenario  = "postgres SELECT (pgbench -S)"
	sysbenchScenario = "mysql read-only txn (sysbench)"
)

// Statements the checks send: allowed on every arm, and denied by the
// Bulkhead policy (the servers would run them).
const (
	pgAllowedSQL    = "SELECT abalance FROM pgbench_accounts WHERE aid = 1"
	pgDeniedSQL     = "DELETE FROM pgbench_history"
	mysqlAllowedSQL = "SELECT id FROM sbtest1 WHERE id = 1"
	mysqlDeniedSQL  = "UPDATE sbtest1 SET k = k WHERE id = 1"
)

// pgbenchTables are what pgbench -S reads: pgbench_accounts per
// transaction; pgbench_branches (its scale) and the catalog (partitions)
// once at start.
var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pg_catalog.pg_class", "pg_catalog.pg_inherits",
	"pg_catalog.pg_namespace", "pg_catalog.pg_partitioned_table"}

// sqlAbout is the report's paragraph on the group.
var sqlAbout = fmt.Sprintf("**SQL** (group `sql`). PostgreSQL (`postgres`, fsync off) on port %[1]d and MariaDB (`mariadbd`) on %[2]d run in `server`, pinned with the load tools, each with database `%[3]s`. "+
	"`pgbench -S -n -c %[4]d -j 1 -T <SQLTime> --protocol=simple` (scale 1; -T includes connecting): one SELECT on pgbench_accounts per transaction, so its CPU is per request; p50/p90/p99 from pgbench's per-transaction log sampled at %[5]s. "+
	"`sysbench oltp_read_only --tables=1 --table-size=%[6]d --threads=%[4]d --time=<SQLTime> --histogram=on` with server-side prepared statements (each COM_STMT_EXECUTE is judged by the verb and tables of its statement): a transaction is BEGIN, 14 SELECTs on sbtest1 and COMMIT; throughput and p50/p90/p99 (from sysbench's histogram) are per transaction, proxy CPU per query. "+
	"Bulkhead's policy: postgres `SSL`, and `SELECT` on pgbench's tables (pgbench_accounts; pgbench_branches and four catalog tables read once at start) in database %[3]s; mysql `SELECT` on sbtest1, `BEGIN` and `COMMIT` in %[3]s; nothing else. "+
	"Before each run the harness checks through every arm that `%[7]s` (psql) and `%[8]s` (mariadb) are answered, and on Bulkhead that `%[9]s` and `%[10]s` are refused by the proxy; after it, that Bulkhead allowed at least as many postgres (mysql) messages as pgbench made transactions (sysbench queries).",
	pgPort, mariadbPort, sqlDB, sqlClients, pgbenchSamplingPct, sysbenchRows, pgAllowedSQL, mysqlAllowedSQL, pgDeniedSQL, mysqlDeniedSQL)

// sqlSuite is the "sql" group.
var sqlSuite = suite{
	group: "sql",
	about: sqlAbout,
	ports: []*bulkheadv1.Port{{Port: pgPort, Protocol: "postgres"}, {Port: mariadbPort, Protocol: "mysql"}},
	rules: sqlRules,
	setup: func(ctx context.Context, b *bench) error {
		if err := b.setupPostgres(ctx); err != nil {
			return err
		}
		return b.setupMariaDB(ctx)
	},
	scenarios: func(b *bench) []scenario {
		return []scenario{{
			name: pgbenchScenario, slug: "pgbench-S",
			group: "sql", port: pgPort, unit: "txn/s", cpuUnit: "µs/req", protocol: "postgres",
			run: b.pgbench, check: b.checkPostgres,
		}, {
			name: sysbenchScenario, slug: "sysbench-oltp-ro",
			group: "sql", port: mariadbPort, unit: "txn/s", cpuUnit: "µs/query", protocol: "mysql",
			run: b.sysbench, check: b.checkMariaDB,
		}}
	},
}

// sqlRules allow the client what pgbench -S and sysbench oltp_read_only
// send, in database sqlDB; every other verb and table is denied.
func sqlRules(peers []*bulkheadv1.Peer) []*bulkheadv1.Rule {
	exact := func(ss ...string) []*bulkheadv1.Pattern {
		ps := make([]*bulkheadv1.Pattern, 0, len(ss))
		for _, s := range ss {
			ps = append(ps, &bulkheadv1.Pattern{Kind: &bulkheadv1.Pattern_Exact{Exact: s}})
		}
		return ps
	}
	return []*bulkheadv1.Rule{{
		Name:  "bench/server/from-client-postgres-5432",
		Peers: peers,
		Ports: []*bulkheadv1.Port{{Port: pgPort, Protocol: "postgres"}},
		L7: []*bulkheadv1.L7Rule{
			// libpq asks for TLS first (sslmode=prefer); the server says no.
			{Verbs: []string{"SSL"}},
			{Verbs: []string{"SELECT"}, Resources: exact(pgbenchTables...), Aux: exact(sqlDB)},
		},
	}, {
		Name:  "bench/server/from-client-mysql-3306",
		Peers: peers,
		Ports: []*bulkheadv1.Port{{Port: mariadbPort, Protocol: "mysql"}},
		L7: []*bulkheadv1.L7Rule{
			{Verbs: []string{"SELECT"}, Resources: exact("sbtest1"), Aux: exact(sqlDB)},
			{Verbs: []string{"BEGIN", "COMMIT"}, Aux: exact(sqlDB)},
		},
	}}
}

// pgProgram finds a PostgreSQL server program: on PATH, else in Debian's
// /usr/lib/postgresql/<version>/bin (the newest version).
func pgProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	if len(found) == 0 {
		return "", fmt.Errorf("no PostgreSQL %s on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)", name)
	}
	return found[0], nil
}

// setupPostgres initialises a cluster under b.dir owned by the postgres
// system user (the server refuses to run as root), trusting the client's
// address, starts it in the server and fills database sqlDB with
// `pgbench -i -s 1` from the client, directly.
func (b *bench) setupPostgres(ctx context.Context) error {
	initdb, err := pgProgram("initdb")
	if err != nil {
		return err
	}
	postgres, err := pgProgram("postgres")
	if err != nil {
		return err
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("postgres system user (created by the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The lab's directory is private to root: postgres must pass through.
	if err := os.Chmod(b.lab.Dir(), 0o711); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	dir := filepath.Join(b.dir, "postgres")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if _, err := b.server.Run(ctx, "env", "LC_ALL=C", "runuser", "-u", "postgres", "--", initdb, "-D", data,
		"-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	// HAProxy connects from the server's own address.
	hba := fmt.Sprintf("host all all %s/32 trust\nhost all all %s/32 trust\n", b.client.Addr(), b.server.Addr())
	f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	_, err = f.WriteString(hba)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("postgres: pg_hba.conf: %w", err)
	}
	p, err := b.server.Start(ctx, "env", append([]string{"LC_ALL=C", "nice"}, b.pinned(loadCPU, "runuser", "-u", "postgres", "--",
		postgres, "-D", data, "-p", strconv.Itoa(pgPort), "-k", dir, "-c", "listen_addresses="+b.server.Addr().String(),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=40", "-c", "shared_buffers=32MB")...)...)
	if err != nil {
		return err
	}
	if err := b.waitListen(ctx, p, pgPort); err != nil {
		return err
	}
	// Listening comes before accepting queries: retry until it answers.
	if err := retry(ctx, func() error {
		_, err := b.client.Run(ctx, "psql", b.psqlArgs("postgres", "CREATE DATABASE "+sqlDB)...)
		return err
	}); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if _, err := b.client.Run(ctx, "pgbench", "-h", b.server.Addr().String(), "-p", strconv.Itoa(pgPort), "-U", "postgres",
		"-i", "-s", "1", "-q", sqlDB); err != nil {
		return fmt.Errorf("pgbench -i: %w", err)
	}
	return nil
}

// setupMariaDB initialises a MariaDB data directory under b.dir, starts
// mariadbd in the server, creates database sqlDB and the client's account
// over the Unix socket, and fills sysbench's table from the client,
// directly.
func (b *bench) setupMariaDB(ctx context.Context) error {
	dir := filepath.Join(b.dir, "mariadb")
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "mysqld.sock")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("mariadb: %w", err)
	}
	if _, err := b.server.Run(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=socket", "--skip-test-db"); err != nil {
		return fmt.Errorf("mariadb-install-db: %w", err)
	}
	p, err := b.server.Start(ctx, "nice", b.pinned(loadCPU, "mariadbd", "--no-defaults", "--datadir="+data, "--user=root",
		"--bind-address="+b.server.Addr().String(), "--port="+strconv.Itoa(mariadbPort), "--socket="+sock,
		"--pid-file="+filepath.Join(dir, "mysqld.pid"), "--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=64M", "--max-connections=50")...)
	if err != nil {
		return err
	}
	if err := b.waitListen(ctx, p, mariadbPort); err != nil {
		return err
	}
	// Any host: HAProxy connects from the server's own address.
	setup := "CREATE DATABASE " + sqlDB + "; CREATE USER '" + sqlUser + "'@'%' IDENTIFIED BY '" + sqlPassword +
		"'; GRANT ALL ON " + sqlDB + ".* TO '" + sqlUser + "'@'%'"
	if _, err := b.server.Run(ctx, "mariadb", "--no-defaults", "--socket="+sock, "-u", "root", "-e", setup); err != nil {
		return fmt.Errorf("mariadb: %w", err)
	}
	if _, err := b.client.Run(ctx, "sysbench", b.sysbenchArgs("prepare")...); err != nil {
		return fmt.Errorf("sysbench prepare: %w", err)
	}
	return nil
}

// retry calls fn every 100 ms until it succeeds, for at most waitTime.
func retry(ctx context.Context, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, waitTime)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up after %v: %w)", err, waitTime, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// psqlArgs are psql's arguments to run sql in database db on the server
// as postgres (no psqlrc, unaligned, tuples only, stop on error).
func (b *bench) psqlArgs(db, sql string) []string {
	return []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", b.server.Addr().String(), "-p", strconv.Itoa(pgPort),
		"-U", "postgres", "-d", db, "-c", sql}
}

// mariadbArgs are the mariadb client's arguments to run sql in sqlDB as
// sqlUser (batch, no column names).
func (b *bench) mariadbArgs(sql string) []string {
	return []string{"--no-defaults", "-h", b.server.Addr().String(), "-P", strconv.Itoa(mariadbPort), "-u", sqlUser,
		"-p" + sqlPassword, "-D", sqlDB, "-N", "-B", "-e", sql}
}

// sysbenchArgs are sysbench's arguments for oltp_read_only's command
// (prepare, run) against the server; extra options go before it.
func (b *bench) sysbenchArgs(command string, extra ...string) []string {
	args := []string{"oltp_read_only", "--db-driver=mysql", "--mysql-host=" + b.server.Addr().String(),
		"--mysql-port=" + strconv.Itoa(mariadbPort), "--mysql-user=" + sqlUser, "--mysql-password=" + sqlPassword,
		"--mysql-db=" + sqlDB, "--tables=1", "--table-size=" + strconv.Itoa(sysbenchRows)}
	return append(append(args, extra...), command)
}

// sqlSeconds is the profile's SQLTime in whole seconds, at least one.
func (b *bench) sqlSeconds() string {
	return strconv.Itoa(max(1, int(b.prof.SQLTime/time.Second)))
}

// checkPostgres: the allowed SELECT answers through arm; on Bulkhead the
// DELETE is refused by the proxy.
func (b *bench) checkPostgres(ctx context.Context, arm Arm) error {
	out, err := b.client.Run(ctx, "psql", b.psqlArgs(sqlDB, pgAllowedSQL)...)
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		return fmt.Errorf("%q through %s: %q, %v", pgAllowedSQL, arm, out, err)
	}
	if arm != Bulkhead {
		return nil
	}
	out, err = b.client.Run(ctx, "psql", b.psqlArgs(sqlDB, pgDeniedSQL)...)
	if err == nil || !strings.Contains(string(out), "bulkhead: ") {
		return fmt.Errorf("%q through Bulkhead was not denied by the proxy: %q, %v", pgDeniedSQL, out, err)
	}
	return nil
}

// checkMariaDB: the allowed SELECT answers through arm; on Bulkhead the
// UPDATE is refused by the proxy.
func (b *bench) checkMariaDB(ctx context.Context, arm Arm) error {
	out, err := b.client.Run(ctx, "mariadb", b.mariadbArgs(mysqlAllowedSQL)...)
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		return fmt.Errorf("%q through %s: %q, %v", mysqlAllowedSQL, arm, out, err)
	}
	if arm != Bulkhead {
		return nil
	}
	out, err = b.client.Run(ctx, "mariadb", b.mariadbArgs(mysqlDeniedSQL)...)
	if err == nil || !strings.Contains(string(out), "bulkhead: ") {
		return fmt.Errorf("%q through Bulkhead was not denied by the proxy: %q, %v", mysqlDeniedSQL, out, err)
	}
	return nil
}

// pgbench runs pgbench -S in the client, pinned to the load CPU, logging
// a sample of its transactions into a directory of its own for the
// latency percentiles.
func (b *bench) pgbench(ctx context.Context) (result, error) {
	logs, err := os.MkdirTemp(b.dir, "pgbench-log-")
	if err != nil {
		return result{}, fmt.Errorf("pgbench: %w", err)
	}
	defer os.RemoveAll(logs)
	out, err := b.tool(ctx, "pgbench", "-h", b.server.Addr().String(), "-p", strconv.Itoa(pgPort), "-U", "postgres",
		"-S", "-n", "-c", strconv.Itoa(sqlClients), "-j", "1", "-T", b.sqlSeconds(), "--protocol=simple",
		"--log", "--sampling-rate="+pgbenchSampling, "--log-prefix="+filepath.Join(logs, "pgbench"), sqlDB)
	if err != nil {
		return result{}, err
	}
	var lat []time.Duration
	err = filepath.WalkDir(logs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		lat, err = appendPgbenchLog(lat, bufio.NewScanner(f))
		return err
	})
	if err != nil {
		return result{}, fmt.Errorf("pgbench log: %w", err)
	}
	return parsePgbench(out, lat)
}

// appendPgbenchLog appends the latencies of a pgbench transaction log
// (--log, without --aggregate-interval: "client_id transaction_no time
// script_no time_epoch time_us [schedule_lag]", time in µs) to lat.
func appendPgbenchLog(lat []time.Duration, sc *bufio.Scanner) ([]time.Duration, error) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			return lat, fmt.Errorf("pgbench log line %q: want 6 fields or more", sc.Text())
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || us < 0 {
			return lat, fmt.Errorf("pgbench log line %q: latency %q", sc.Text(), f[2])
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	return lat, sc.Err()
}

var (
	pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	pgbenchFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
)

// parsePgbench reads pgbench's summary: transactions processed (Ops: one
// query each under -S) and tps; the percentiles come from lat, the
// sampled transactions' latencies, of which there must be some.
func parsePgbench(out []byte, lat []time.Duration) (result, error) {
	m := pgbenchProcessed.FindSubmatch(out)
	if m != nil && string(m[1]) == "0" {
		// -T counts from before the connections: on a loaded machine
		// forking 16 backends can take the whole run.
		return result{}, fmt.Errorf("pgbench: no transaction processed (did connecting take the whole -T?): %q", clip(out))
	}
	t := pgbenchTPS.FindSubmatch(out)
	if m == nil || t == nil {
		return result{}, fmt.Errorf("pgbench: no transaction count or tps in %q", clip(out))
	}
	if f := pgbenchFailed.FindSubmatch(out); f != nil && string(f[1]) != "0" {
		return result{}, fmt.Errorf("pgbench: %s failed transactions", f[1])
	}
	n, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || n <= 0 {
		return result{}, fmt.Errorf("pgbench: transactions %q", m[1])
	}
	tps, err := strconv.ParseFloat(string(t[1]), 64)
	if err != nil || tps <= 0 {
		return result{}, fmt.Errorf("pgbench: tps %q", t[1])
	}
	if len(lat) == 0 {
		return result{}, fmt.Errorf("pgbench: no transaction logged (sampling rate %s of %.0f)", pgbenchSampling, n)
	}
	slices.Sort(lat)
	rank := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return result{
		Throughput: tps, Ops: n, P50: rank(0.50), P90: rank(0.90), P99: rank(0.99),
		Elapsed: time.Duration(n / tps * float64(time.Second)),
	}, nil
}

// sysbench runs sysbench oltp_read_only in the client, pinned to the load
// CPU, with its latency histogram for the percentiles.
func (b *bench) sysbench(ctx context.Context) (result, error) {
	out, err := b.tool(ctx, "sysbench", b.sysbenchArgs("run", "--threads="+strconv.Itoa(sqlClients),
		"--time="+b.sqlSeconds(), "--report-interval=0", "--histogram=on")...)
	if err != nil {
		return result{}, err
	}
	return parseSysbench(out)
}

var (
	sysbenchTxns    = regexp.MustCompile(`(?m)^\s*transactions:\s+(\d+)\s+\(([0-9.]+) per sec\.\)`)
	sysbenchQueries = regexp.MustCompile(`(?m)^\s*queries:\s+(\d+)\s+\(([0-9.]+) per sec\.\)`)
	sysbenchIgnored = regexp.MustCompile(`(?m)^\s*ignored errors:\s+(\d+)\s`)
	sysbenchTime    = regexp.MustCompile(`(?m)^\s*total time:\s+([0-9.]+)s`)
	sysbenchBucket  = regexp.MustCompile(`(?m)^\s*([0-9]+\.[0-9]+) \|\**\s+(\d+)\s*$`)
)

// parseSysbench reads sysbench 1.0's run output: transactions per second
// (Throughput), queries (Ops: each one judged by the proxy), the run's
// time, and p50/p90/p99 of the transactions from the latency histogram
// (--histogram=on; each bucket's value, in ms, is its lower bound).
func parseSysbench(out []byte) (result, error) {
	tx, q, tt := sysbenchTxns.FindSubmatch(out), sysbenchQueries.FindSubmatch(out), sysbenchTime.FindSubmatch(out)
	if tx == nil || q == nil || tt == nil {
		return result{}, fmt.Errorf("sysbench: no transactions, queries or total time in %q", clip(out))
	}
	if ig := sysbenchIgnored.FindSubmatch(out); ig == nil || string(ig[1]) != "0" {
		return result{}, fmt.Errorf("sysbench: ignored errors in %q", clip(out))
	}
	tps, err := strconv.ParseFloat(string(tx[2]), 64)
	if err != nil || tps <= 0 {
		return result{}, fmt.Errorf("sysbench: transactions per second %q", tx[2])
	}
	queries, err := strconv.ParseFloat(string(q[1]), 64)
	if err != nil || queries <= 0 {
		return result{}, fmt.Errorf("sysbench: queries %q", q[1])
	}
	secs, err := strconv.ParseFloat(string(tt[1]), 64)
	if err != nil || secs <= 0 {
		return result{}, fmt.Errorf("sysbench: total time %q", tt[1])
	}
	type bucket struct {
		ms    float64
		count int64
	}
	var hist []bucket
	var total int64
	for _, m := range sysbenchBucket.FindAllSubmatch(out, -1) {
		ms, err1 := strconv.ParseFloat(string(m[1]), 64)
		n, err2 := strconv.ParseInt(string(m[2]), 10, 64)
		if err1 != nil || err2 != nil || n < 0 {
			return result{}, fmt.Errorf("sysbench: histogram line %q", m[0])
		}
		hist = append(hist, bucket{ms, n})
		total += n
	}
	if total == 0 {
		return result{}, fmt.Errorf("sysbench: no latency histogram (--histogram=on) in %q", clip(out))
	}
	pct := func(p float64) time.Duration {
		want, seen := int64(p*float64(total)), int64(0)
		for _, bk := range hist {
			seen += bk.count
			if seen > want {
				return time.Duration(bk.ms * float64(time.Millisecond))
			}
		}
		return time.Duration(hist[len(hist)-1].ms * float64(time.Millisecond))
	}
	return result{
		Throughput: tps, Ops: queries, P50: pct(0.50), P90: pct(0.90), P99: pct(0.99),
		Elapsed: time.Duration(secs * float64(time.Second)),
	}, nil
}

// duckdb.js THREADS SQL — run one statement in an in-memory DuckDB with
// THREADS threads, through its Node package (@duckdb/node-api, installed
// by bench/peers.sh into bench/node_modules). A query's rows go to stdout
// as CSV lines; COPY … TO writes its file itself.
(async () => {
    const [threads, sql] = process.argv.slice(2);
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:', { threads: String(threads) });
    const con = await db.connect();
    const reader = await con.runAndReadAll(sql);
    for (const row of reader.getRows()) console.log(row.map(String).join(','));
})().catch((e) => {
    console.error(e.message || e);
    process.exit(1);
});

#!/usr/bin/env cwl-runner
# The allele frequencies of a region of one dataset, read from its DuckDB file (the node
# mounts the dataset read-only at /data/<dataset>): a table of chrom, pos, ref, alt, ac
# (alternate alleles counted), an (alleles called) and af, of the variants with at least
# min_count of each allele (so that no count is small). Approve it at a node with
# `genofed node workflow approve NODE_DIR allele-frequencies.cwl` after reading it.
cwlVersion: v1.2
class: CommandLineTool
label: Allele frequencies of a region
baseCommand: [python3, -c]
arguments:
  - |
    import sys
    import duckdb
    database, chrom = sys.argv[1], sys.argv[2]
    start, end, least = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    con = duckdb.connect(database, read_only=True)
    rows = con.execute(
        "SELECT chrom, pos, ref, alt, ac, an, round(ac / nullif(an, 0), 6) AS af "
        "FROM variants WHERE replace(chrom, 'chr', '') = replace(?, 'chr', '') "
        "AND pos BETWEEN ? AND ? AND ac >= ? AND an - ac >= ? ORDER BY pos, alt",
        [chrom, start, end, least, least],
    ).fetchall()
    print("chrom\tpos\tref\talt\tac\tan\taf")
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
inputs:
  database: {type: string, inputBinding: {position: 1}, doc: "e.g. /data/<dataset>/dataset.duckdb"}
  chrom: {type: string, inputBinding: {position: 2}}
  start: {type: int, inputBinding: {position: 3}}
  end: {type: int, inputBinding: {position: 4}}
  min_count: {type: int, default: 0, inputBinding: {position: 5}}
outputs:
  frequencies: {type: stdout}
stdout: allele-frequencies.tsv

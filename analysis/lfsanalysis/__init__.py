"""lfsanalysis: offline analysis of lfsearch run logs (run.h5, DESIGN section 6).

runlog  reads a run directory or run.h5 into a Run (partial logs included)
figures draws the PNG figures of one run and the comparison of several
report  writes the Markdown report and the comparison table
export  writes every per-epoch series as CSV
"""

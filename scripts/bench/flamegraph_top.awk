# scripts/bench/flamegraph_top.awk - the top frames of an inferno/pprof-rs flamegraph SVG.
#
# Usage: awk -v top=15 -v self_top=10 -f scripts/bench/flamegraph_top.awk flamegraph.svg
# (POSIX awk; mawk and gawk both work.)
#
# Every frame of the SVG is a <title>NAME (N samples, X%)</title> followed by
# <rect x=.. y=.. width=.. fg:x=.. fg:w=..>, where fg:x and fg:w are in samples and y is the
# row (the root "all" at the bottom). Printed:
#  1. the top `top` frames by INCLUSIVE sample share (a frame's samples include its callees'),
#     leaving out all-inclusive frames (>= 95% of all samples: the root "all", the thread
#     name pprof-rs puts above it, thread start-up and the runtime's worker loop), and showing
#     a chain of wrapper frames that each keep >= 95% of the chain's first frame only once, as
#     that first frame (with the number of frames folded into it). A function found in several
#     stacks is summed over them (occurrences nested in another occurrence of it not counted);
#  2. the top `self_top` frames by SELF samples (samples in that frame and not in a callee),
#     summed by name over all stacks.
# Names are XML-unescaped, shortened (module paths of type names and the default allocator
# parameter dropped) and cut to `width` characters (default 110).

function unescape(s) {
    gsub(/&lt;/, "<", s)
    gsub(/&gt;/, ">", s)
    gsub(/&quot;/, "\"", s)
    gsub(/&apos;/, "'", s)
    gsub(/&#39;/, "'", s)
    gsub(/&amp;/, "\\&", s)
    return s
}

# The value of attribute `a` (exact name, preceded by a space) in `line`, without a trailing %.
function attr(line, a,    v) {
    if (!match(line, " " a "=\"[^\"]*\"")) return ""
    v = substr(line, RSTART + length(a) + 3, RLENGTH - length(a) - 4)
    sub(/%$/, "", v)
    return v
}

# Shorter names: module paths dropped from type names (alloc::sync::Arc<T> -> Arc<T>), the
# default allocator parameter dropped, then cut to `width` characters.
function cut(s) {
    while (match(s, /[a-z_][a-z0-9_]*::([a-z_][a-z0-9_]*::)*[A-Z]/))
        s = substr(s, 1, RSTART - 1) substr(s, RSTART + RLENGTH - 1)
    gsub(/, Global>/, ">", s)
    return length(s) > width ? substr(s, 1, width - 3) "..." : s
}

BEGIN {
    if (top == "") top = 15
    if (self_top == "") self_top = 10
    if (width == "") width = 110
    RS = "<title>"
}

NR > 1 {
    title = $0
    sub(/<\/title>.*/, "", title)
    if (!match(title, / \([0-9,]+ samples?, [0-9.]+%\)$/)) next
    name = unescape(substr(title, 1, RSTART - 1))
    samples = attr($0, "fg:w")
    start = attr($0, "fg:x")
    row = attr($0, "y")
    if (samples == "" || start == "" || row == "") next
    n++
    nm[n] = name
    w[n] = samples + 0
    x[n] = start + 0
    y[n] = row + 0
    if (name == "all") { root = n; total = w[n] }
}

END {
    if (!root || total <= 0) {
        print "  (no frames found in the flamegraph)"
        exit
    }
    # Depth of each frame: distance in rows from the root (works for inverted graphs too).
    step = 0
    for (i = 1; i <= n; i++) {
        d = y[i] - y[root]
        if (d < 0) d = -d
        if (d > 0 && (step == 0 || d < step)) step = d
    }
    maxdepth = 0
    for (i = 1; i <= n; i++) {
        d = y[i] - y[root]
        if (d < 0) d = -d
        depth[i] = step ? int(d / step + 0.5) : 0
        if (depth[i] > maxdepth) maxdepth = depth[i]
        rows[depth[i]] = rows[depth[i]] " " i
    }
    # Parent: the frame one row closer to the root whose span holds this frame's start.
    for (i = 1; i <= n; i++) {
        parent[i] = 0
        if (depth[i] == 0) continue
        k = split(rows[depth[i] - 1], cand, " ")
        for (j = 1; j <= k; j++) {
            p = cand[j] + 0
            if (x[p] <= x[i] && x[i] < x[p] + w[p]) { parent[i] = p; break }
        }
        children[parent[i]] += w[i]
    }
    # Chains, visiting parents before children (by depth).
    for (d = 0; d <= maxdepth; d++) {
        k = split(rows[d], cand, " ")
        for (j = 1; j <= k; j++) {
            i = cand[j] + 0
            p = parent[i]
            inclusive_all = (w[i] >= 0.95 * total || depth[i] <= 1)
            if (inclusive_all) { head[i] = 0; continue }
            if (p && head[p] && w[i] >= 0.95 * w[head[p]]) {
                head[i] = head[p]
                folded[head[p]]++
            } else {
                head[i] = i
            }
        }
    }
    # Inclusive: chain heads summed by name, skipping occurrences nested in the same name.
    for (i = 1; i <= n; i++) {
        if (head[i] != i) continue
        nested = 0
        for (p = parent[i]; p; p = parent[p])
            if (nm[p] == nm[i]) { nested = 1; break }
        if (nested) continue
        incl[nm[i]] += w[i]
        if (folded[i] > fold[nm[i]]) fold[nm[i]] = folded[i]
    }
    # Self: own samples minus the callees', summed by name.
    for (i = 1; i <= n; i++) {
        s = w[i] - children[i]
        if (s > 0) self[nm[i]] += s
    }
    printf "  inclusive (of %d samples):\n", total
    print_top(incl, top, 1)
    printf "  self:\n"
    print_top(self, self_top, 0)
}

# Prints the `limit` largest entries of `arr` (selection; the arrays are small).
function print_top(arr, limit, with_fold,    key, best, bestv, shown, done, extra) {
    split("", done)
    for (shown = 0; shown < limit; shown++) {
        best = ""
        bestv = -1
        for (key in arr)
            if (!(key in done) && (arr[key] > bestv || (arr[key] == bestv && key < best))) {
                best = key
                bestv = arr[key]
            }
        if (best == "") break
        done[best] = 1
        extra = (with_fold && fold[best]) ? sprintf(" [+%d]", fold[best]) : ""
        printf "  %5.1f%% %6d  %s%s\n", 100 * bestv / total, bestv, cut(best), extra
    }
}

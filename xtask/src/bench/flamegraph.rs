//! The top frames of an inferno/pprof-rs flamegraph SVG, for `bench api`'s summary: the 15
//! frames with the largest INCLUSIVE sample share (a frame's samples include its callees'),
//! then the 10 with the most SELF samples.
//!
//! Every frame of the SVG is a `<title>NAME (N samples, X%)</title>` followed by `<rect x=..
//! y=.. width=.. fg:x=.. fg:w=..>`, where `fg:x` and `fg:w` are in samples and `y` is the row
//! (the root `all` at the bottom). Inclusive: all-inclusive frames (>= 95% of all samples: the
//! root, the thread name pprof-rs puts above it, thread start-up, the runtime's worker loop)
//! are left out, and a chain of wrapper frames that each keep >= 95% of the chain's first frame
//! is shown once, as that first frame, with `[+N]` frames folded into it; a function found in
//! several stacks is summed over them (an occurrence nested in another of the same name not
//! counted). Self: a frame's samples minus its callees', summed by name. Names are
//! XML-unescaped, shortened (module paths of type names and the default allocator parameter
//! dropped) and cut to 110 characters.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Frames listed by inclusive share.
pub const TOP: usize = 15;
/// Frames listed by self samples.
pub const SELF_TOP: usize = 10;
/// Longest name shown.
const WIDTH: usize = 110;
/// A frame holding this share of its reference is "all-inclusive" or a mere wrapper.
const INCLUSIVE: f64 = 0.95;

#[derive(Debug)]
struct Frame {
    name: String,
    w: f64,
    x: f64,
    y: f64,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `a` (exact name, preceded by a space) in `chunk`, without a trailing %.
fn attr(chunk: &str, a: &str) -> Option<f64> {
    let start = chunk.find(&format!(" {a}=\""))? + a.len() + 3;
    let len = chunk[start..].find('"')?;
    chunk[start..start + len].trim_end_matches('%').parse().ok()
}

/// `NAME` of a title `NAME (1,234 samples, 5.6%)`, None for other titles.
fn frame_name(title: &str) -> Option<&str> {
    let open = title.rfind(" (")?;
    let inner = title[open + 2..].strip_suffix("%)")?;
    let (count, pct) = inner.split_once(", ")?;
    let digits = count.strip_suffix(" samples").or_else(|| count.strip_suffix(" sample"))?;
    let ok = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == ',')
        && !pct.is_empty()
        && pct.chars().all(|c| c.is_ascii_digit() || c == '.');
    ok.then(|| &title[..open])
}

fn parse(svg: &str) -> Vec<Frame> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|chunk| {
            let title = &chunk[..chunk.find("</title>").unwrap_or(chunk.len())];
            let name = unescape(frame_name(title)?);
            Some(Frame { name, w: attr(chunk, "fg:w")?, x: attr(chunk, "fg:x")?, y: attr(chunk, "y")? })
        })
        .collect()
}

/// The sample count of the root frame (`all`), 0 when there is none.
pub fn total_samples(svg: &str) -> u64 {
    let Some(at) = svg.find("<title>all (") else { return 0 };
    svg[at + 12..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_lowercase() || c == b'_'
}
fn is_ident(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

/// Where `ident::(ident::)*[A-Z]` matches at `i`: the index of the capital letter.
fn module_path_at(s: &[u8], mut i: usize) -> Option<usize> {
    if !s.get(i).copied().is_some_and(is_ident_start) {
        return None;
    }
    loop {
        while s.get(i).copied().is_some_and(is_ident) {
            i += 1;
        }
        if !s[i..].starts_with(b"::") {
            return None;
        }
        i += 2;
        match s.get(i) {
            Some(c) if c.is_ascii_uppercase() => return Some(i),
            Some(c) if is_ident_start(*c) => {}
            _ => return None,
        }
    }
}

/// A shorter name: module paths of type names dropped (`alloc::sync::Arc<T>` -> `Arc<T>`), the
/// default allocator parameter dropped, cut to 110 characters.
fn shorten(name: &str) -> String {
    let mut s = name.to_owned();
    'again: loop {
        let bytes = s.as_bytes();
        for start in 0..bytes.len() {
            if let Some(capital) = module_path_at(bytes, start) {
                s.replace_range(start..capital, "");
                continue 'again;
            }
        }
        break;
    }
    let s = s.replace(", Global>", ">");
    if s.chars().count() > WIDTH { s.chars().take(WIDTH - 3).collect::<String>() + "..." } else { s }
}

/// The report: `  inclusive (of N samples):`, up to `top` lines, `  self:`, up to `self_top`.
pub fn top_frames(svg: &str, top: usize, self_top: usize) -> String {
    let f = parse(svg);
    let Some(root) = f.iter().position(|fr| fr.name == "all") else {
        return "  (no frames found in the flamegraph)\n".into();
    };
    let total = f[root].w;
    if total <= 0.0 {
        return "  (no frames found in the flamegraph)\n".into();
    }
    let n = f.len();
    // Depth: distance in rows from the root (inverted graphs too), in steps of one row height.
    let dist: Vec<f64> = f.iter().map(|fr| (fr.y - f[root].y).abs()).collect();
    let step = dist.iter().copied().filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small non-negative row counts")]
    let depth: Vec<usize> = dist.iter().map(|d| if step.is_finite() { (d / step + 0.5) as usize } else { 0 }).collect();
    let maxdepth = depth.iter().copied().max().unwrap_or(0);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); maxdepth + 1];
    for i in 0..n {
        rows[depth[i]].push(i);
    }
    // Parent: the frame one row closer to the root whose span holds this frame's start.
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut children = vec![0.0; n];
    for i in 0..n {
        if depth[i] == 0 {
            continue;
        }
        parent[i] = rows[depth[i] - 1].iter().copied().find(|&p| f[p].x <= f[i].x && f[i].x < f[p].x + f[p].w);
        if let Some(p) = parent[i] {
            children[p] += f[i].w;
        }
    }
    // Chains, parents before children.
    let mut head: Vec<Option<usize>> = vec![None; n];
    let mut folded = vec![0_usize; n];
    for row in &rows {
        for &i in row {
            if f[i].w >= INCLUSIVE * total || depth[i] <= 1 {
                continue;
            }
            head[i] = match parent[i].and_then(|p| head[p]) {
                Some(h) if f[i].w >= INCLUSIVE * f[h].w => {
                    folded[h] += 1;
                    Some(h)
                }
                _ => Some(i),
            };
        }
    }
    let mut inclusive: HashMap<&str, f64> = HashMap::new();
    let mut fold: HashMap<&str, usize> = HashMap::new();
    for i in (0..n).filter(|&i| head[i] == Some(i)) {
        let mut p = parent[i];
        let mut nested = false;
        while let Some(q) = p {
            if f[q].name == f[i].name {
                nested = true;
                break;
            }
            p = parent[q];
        }
        if nested {
            continue;
        }
        *inclusive.entry(&f[i].name).or_default() += f[i].w;
        let e = fold.entry(&f[i].name).or_default();
        *e = (*e).max(folded[i]);
    }
    let mut own: HashMap<&str, f64> = HashMap::new();
    for i in 0..n {
        let s = f[i].w - children[i];
        if s > 0.0 {
            *own.entry(&f[i].name).or_default() += s;
        }
    }
    let mut out = format!("  inclusive (of {total:.0} samples):\n");
    print_top(&mut out, &inclusive, top, total, Some(&fold));
    out.push_str("  self:\n");
    print_top(&mut out, &own, self_top, total, None);
    out
}

fn print_top(
    out: &mut String,
    values: &HashMap<&str, f64>,
    limit: usize,
    total: f64,
    fold: Option<&HashMap<&str, usize>>,
) {
    let mut v: Vec<(&str, f64)> = values.iter().map(|(k, v)| (*k, *v)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    for (name, samples) in v.into_iter().take(limit) {
        let extra = match fold.and_then(|f| f.get(name)) {
            Some(n) if *n > 0 => format!(" [+{n}]"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {:5.1}% {:6.0}  {}{extra}", 100.0 * samples / total, samples, shorten(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, samples: u32, x: u32, y: u32) -> String {
        format!(
            "<g><title>{name} ({samples} samples, 1.0%)</title><rect x=\"0%\" y=\"{y}\" width=\"1%\" \
             fg:x=\"{x}\" fg:w=\"{samples}\" height=\"15\"/></g>\n"
        )
    }

    /// all(100) <- thread(100) <- worker(98) <- handler(60) <- wrapper(58) <- lookup(40);
    /// worker <- idle(30).
    fn svg() -> String {
        [
            frame("all", 100, 0, 500),
            frame("api-worker", 100, 0, 484),
            frame("tokio::runtime::worker::run", 98, 0, 468),
            frame("api::routes::handler", 60, 0, 452),
            frame("core::future::Wrapper&lt;alloc::sync::Arc&lt;T, Global&gt;&gt;", 58, 0, 436),
            frame("fred::Lookup", 40, 0, 420),
            frame("idle", 30, 60, 452),
        ]
        .concat()
    }

    #[test]
    fn inclusive_frames_fold_wrappers_and_skip_all_inclusive_ones() {
        let report = top_frames(&svg(), TOP, SELF_TOP);
        let expected = "  inclusive (of 100 samples):\n\
                        \x20  60.0%     60  api::routes::handler [+1]\n\
                        \x20  40.0%     40  Lookup\n\
                        \x20  30.0%     30  idle\n\
                        \x20 self:\n\
                        \x20  40.0%     40  Lookup\n\
                        \x20  30.0%     30  idle\n\
                        \x20  18.0%     18  Wrapper<Arc<T>>\n\
                        \x20   8.0%      8  tokio::runtime::worker::run\n\
                        \x20   2.0%      2  api-worker\n\
                        \x20   2.0%      2  api::routes::handler\n";
        assert_eq!(report, expected);
        assert_eq!(total_samples(&svg()), 100);
    }

    #[test]
    fn an_svg_without_frames_says_so() {
        assert_eq!(top_frames("<svg></svg>", TOP, SELF_TOP), "  (no frames found in the flamegraph)\n");
        assert_eq!(total_samples("<svg></svg>"), 0);
    }

    #[test]
    fn names_lose_module_paths_of_types_and_are_cut() {
        assert_eq!(shorten("alloc::sync::Arc<core::cell::RefCell<u8>>"), "Arc<RefCell<u8>>");
        assert_eq!(shorten("api::lookup::get"), "api::lookup::get");
        assert_eq!(shorten("Vec<u8, Global>"), "Vec<u8>");
        assert_eq!(shorten(&"x".repeat(200)).chars().count(), WIDTH);
        assert_eq!(frame_name("all (1,234 samples, 100%)"), Some("all"));
        assert_eq!(frame_name("not a frame"), None);
    }
}

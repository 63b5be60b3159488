//! A short smoke run of each fuzz target's body on mutations of its seeds,
//! in CI. The real fuzzing (`fuzz/run.sh`, cargo fuzz) needs nightly.

use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b":",
    b",",
    b"null",
    b"-1e999",
    b"{{",
    b"}}",
    b"{%",
    b"%}",
    b"\n",
    b"\r",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"loop { }",
    b"ctx.payload.",
    b".0.",
    b"\"gt\"",
    b"\"quantifier\": \"all\"",
    b"hits.total",
    b"99999999999999999999",
    b"&a ",
    b"*a",
    b"<<: ",
    b"\n- ",
    b"{minutes: ",
    b"!!str ",
    b" -> ",
    b"?.",
    b" ?: ",
    b"def ",
    b"(int) ",
    b"new ",
    b"[:]",
    b"'",
    b"for (",
    b"while (true) ",
    b".stream()",
    b"Collectors.",
    b"::",
    b"2147483648",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(v.len())..end);
            }
            1 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, ins.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {
                // Duplicate a slice, which nests structures.
                let start = rng.below(v.len() + 1);
                let end = (start + rng.below(64)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

fn smoke(target: &str, f: fn(&[u8]), iterations: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for s in &seeds {
        f(s);
    }
    for i in 0..iterations {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        f(&input);
    }
}

#[test]
fn loader_never_panics() {
    smoke("loader", esalert::fuzzing::loader, 3000);
}

#[test]
fn elastalert_loader_never_panics() {
    smoke("elastalert", esalert::fuzzing::elastalert, 3000);
}

#[test]
fn condition_never_panics() {
    smoke("condition", esalert::fuzzing::condition, 5000);
}

#[test]
fn logfmt_lines_always_parse() {
    smoke("logfmt", esalert::fuzzing::logfmt, 20000);
}

#[test]
fn painless_never_panics() {
    smoke("painless", esalert::fuzzing::painless, 6000);
}

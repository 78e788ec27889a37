#![no_main]
//! Feeds arbitrary text, each line a header value, to `cookies::pairs` and `cookies::without`
//! (the gate's cookie predicate), to `policy::is_api_request` (each line as `name: value`),
//! and each line to `redirect::same_origin_path` and `policy::is_normal_path`.
//! Pass: no panic; pairs have trimmed, non-empty names; `without` keeps every other piece
//! and never one for which the predicate held; an accepted return path stays on this origin
//! once a browser resolves it; a normal path has no empty segment or backslash.

use claveunica_core::policy;
use claveunica_core::web::{cookies, redirect};
use libfuzzer_sys::fuzz_target;

fn is_ours(name: &str) -> bool {
    name == "__Host-claveunica_session"
        || name.starts_with("__Host-claveunica_flow_")
        || name == "__Host-claveunica_canary"
}

fn name_of(piece: &str) -> &str {
    piece.split_once('=').map_or(piece, |(n, _)| n).trim()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();

    for (name, value) in cookies::pairs(lines.iter().copied()) {
        assert!(!name.is_empty() && name == name.trim() && value == value.trim());
        assert!(!name.contains(';') && !name.contains('=') && !value.contains(';'));
    }

    let pieces: Vec<&str> = lines.iter().flat_map(|l| l.split(';')).map(str::trim).filter(|p| !p.is_empty()).collect();
    let kept: Vec<&str> = pieces.iter().copied().filter(|p| !is_ours(name_of(p))).collect();
    match cookies::without(lines.iter().copied(), is_ours) {
        Some(out) => {
            let out_pieces: Vec<&str> = out.split(';').map(str::trim).collect();
            assert!(out_pieces.iter().all(|p| !p.is_empty() && !is_ours(name_of(p))), "kept ours: {out:?}");
            assert_eq!(out_pieces, kept, "pieces lost or reordered");
        }
        None => assert!(kept.is_empty(), "dropped the application's cookies: {kept:?}"),
    }

    let headers: Vec<(&str, &str)> =
        lines.iter().filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim(), v.trim())).collect();
    let _ = policy::is_api_request(headers.iter().copied());

    let origin = url::Url::parse("https://portal.test/app/").expect("a valid base");
    for line in &lines {
        if let Some(path) = redirect::same_origin_path(line) {
            assert_eq!(path, *line);
            let target = origin.join(path).expect("an accepted path resolves");
            assert_eq!(target.origin(), origin.origin(), "{path:?} leaves the origin: {target}");
        }
        let path = line.split_once('?').map_or(*line, |(p, _)| p);
        if policy::is_normal_path(path) {
            assert!(path.starts_with('/') && !path.contains("//") && !path.contains('\\'), "{path:?}");
        }
    }
});

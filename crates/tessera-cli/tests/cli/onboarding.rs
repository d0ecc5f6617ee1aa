//! `tessera onboarding ...`.

use crate::common::*;

#[test]
fn a_token_with_two_uses_enrolls_two_devices() {
    let env = Env::init();
    let v = env.json(&[
        "onboarding",
        "create",
        "--policy",
        "kiosk",
        "--group",
        "lobby",
        "--uses",
        "2",
    ]);
    let (secret, id) = issued(&v);
    assert!(secret.starts_with("tsr_onb_"));
    assert_eq!(v["token"]["remaining"], 2);
    for device in ["dev-1", "dev-2"] {
        let e = env.json_in(&["onboarding", "redeem", "--device", device], &secret);
        assert_eq!(e["policy"], "kiosk");
        assert_eq!(e["group"], "lobby");
        assert_eq!(e["repeated"], false);
    }
    let e = env.json_fails_in(
        &["onboarding", "redeem", "--device", "dev-3"],
        &secret,
        REJECTED,
    );
    assert_eq!(e["reason"], "exhausted");
    let list = env.json(&["onboarding", "list"]);
    let t = &list[0];
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["state"], "exhausted");
    assert_eq!(t["devices"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret));
}

#[test]
fn a_bound_token_refuses_other_devices_and_revoked_tokens_enroll_nothing() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--unlimited",
        "--device",
        "A1",
    ]));
    let e = env.json_fails_in(
        &["onboarding", "redeem", "--device", "B2"],
        &secret,
        REJECTED,
    );
    assert_eq!(e["reason"], "device_mismatch");
    env.ok_in(&["onboarding", "redeem", "--device", "A1"], &secret);
    env.fails(&["onboarding", "revoke", &id], BAD_INPUT);
    env.ok(&["onboarding", "revoke", "--yes", &id]);
    let e = env.json_fails_in(
        &["onboarding", "redeem", "--device", "A1"],
        &secret,
        REJECTED,
    );
    assert_eq!(e["reason"], "revoked");
    // Revoke only takes onboarding tokens.
    let (_, dep) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    env.fails(&["onboarding", "revoke", "-y", &dep], NOT_FOUND);
}

#[test]
fn create_draws_svg_and_png_files_privately() {
    let env = Env::init();
    let svg = env.dir.path().join("code.svg");
    let v = env.json(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--qr",
        "svg",
        "--out",
        svg.to_str().unwrap(),
        "--uri",
        "https://mdm.example.com/enroll",
    ]);
    assert_eq!(v["qr_file"], svg.to_str().unwrap());
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&svg).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let png = env.dir.path().join("code.png");
    env.ok(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--qr",
        "png",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    // An existing file is never overwritten, and nothing is created then.
    let before = env.json(&["onboarding", "list"]).as_array().unwrap().len();
    let err = env.fails(
        &[
            "onboarding",
            "create",
            "--policy",
            "p",
            "--group",
            "g",
            "--qr",
            "png",
            "--out",
            png.to_str().unwrap(),
        ],
        BAD_INPUT,
    );
    assert!(err.contains("exists"), "{err}");
    env.fails(
        &[
            "onboarding",
            "create",
            "--policy",
            "p",
            "--group",
            "g",
            "--qr",
            "svg",
        ],
        BAD_INPUT,
    );
    assert_eq!(
        env.json(&["onboarding", "list"]).as_array().unwrap().len(),
        before
    );
}

#[test]
fn qr_redraws_a_token_after_checking_it() {
    let env = Env::init();
    let (secret, id) =
        issued(&env.json(&["onboarding", "create", "--policy", "p", "--group", "g"]));
    let term = env.ok_in(&["onboarding", "qr"], &secret);
    assert!(
        term.contains('█') || term.contains('▀') || term.contains('▄'),
        "{term}"
    );
    let svg = env.dir.path().join("again.svg");
    env.ok_in(
        &[
            "onboarding",
            "qr",
            "--format",
            "svg",
            "--out",
            svg.to_str().unwrap(),
        ],
        &secret,
    );
    assert!(svg.exists());
    let android = env.ok_in(
        &[
            "onboarding",
            "qr",
            "--android-component",
            "com.example.dpc/.AdminReceiver",
            "--android-download",
            "https://example.com/dpc.apk",
            "--android-checksum",
            "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
        ],
        &secret,
    );
    assert!(!android.is_empty());
    // Not an onboarding token; unknown; revoked.
    env.fails_in(&["onboarding", "qr"], "hello", BAD_INPUT);
    let other = tessera::Secret::generate(tessera::Kind::Onboarding).unwrap();
    env.fails_in(&["onboarding", "qr"], other.expose_secret(), REJECTED);
    env.ok(&["-y", "onboarding", "revoke", &id]);
    let v = env.json_fails_in(&["onboarding", "qr"], &secret, REJECTED);
    assert_eq!(v["reason"], "revoked");
}

#[test]
fn bulk_writes_every_secret_once_to_a_private_file() {
    let env = Env::init();
    let out = env.dir.path().join("secrets.tsv");
    let v = env.json(&[
        "onboarding",
        "bulk",
        "--policy",
        "p",
        "--group",
        "north",
        "--also-group",
        "south",
        "--count",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(v["created"], 6);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    // --json writes JSON lines.
    for l in &lines {
        let row = parse(l);
        assert!(row["secret"].as_str().unwrap().starts_with("tsr_onb_"));
        assert_eq!(row["policy"], "p");
    }
    let groups: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.contains("north") {
                "north"
            } else {
                "south"
            }
        })
        .collect();
    assert_eq!(groups.iter().filter(|g| **g == "north").count(), 3);
    let secret = parse(lines[5])["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        env.json_in(&["onboarding", "redeem", "--device", "d"], &secret)["group"],
        "south"
    );
    assert_eq!(
        env.json(&["onboarding", "list"]).as_array().unwrap().len(),
        6
    );
    // Never over an existing file, and nothing created then.
    env.fails(
        &[
            "onboarding",
            "bulk",
            "--policy",
            "p",
            "--group",
            "g",
            "--out",
            out.to_str().unwrap(),
        ],
        BAD_INPUT,
    );
    assert_eq!(
        env.json(&["onboarding", "list"]).as_array().unwrap().len(),
        6
    );
}

#[test]
fn bulk_to_standard_output_as_tab_separated_lines() {
    let env = Env::init();
    let text = env.ok(&[
        "onboarding",
        "bulk",
        "--policy",
        "p",
        "--group",
        "g",
        "--count",
        "2",
        "--uses",
        "5",
    ]);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in &lines {
        assert_eq!(l.len(), 4);
        assert_eq!(l[1], "g");
        assert!(l[3].starts_with("tsr_onb_"));
        env.ok(&["verify", l[3]]);
    }
    env.fails(
        &[
            "onboarding",
            "bulk",
            "--policy",
            "p",
            "--group",
            "g",
            "--count",
            "0",
        ],
        BAD_INPUT,
    );
}

#[test]
fn short_codes_can_be_typed() {
    let env = Env::init();
    let (code, _) = issued(&env.json(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--short-code",
    ]));
    assert!(!code.starts_with("tsr_"));
    let typed = code.to_lowercase().replace('-', "");
    env.ok(&["verify", &typed]);
    env.ok_in(&["onboarding", "redeem", "--device", "d"], &typed);
}

/// Decode a PNG QR code with rqrr.
fn decode_png(path: &std::path::Path) -> Vec<String> {
    let img = image::open(path).unwrap().to_luma8();
    rqrr::PreparedImage::prepare(img)
        .detect_grids()
        .iter()
        .map(|g| g.decode().unwrap().1)
        .collect()
}

#[test]
fn a_sealed_token_shows_its_qr_code_again_by_id_while_it_can_enroll() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&[
        "onboarding",
        "create",
        "--policy",
        "p",
        "--group",
        "g",
        "--uses",
        "1",
        "--expires",
        "7d",
        "--keep-sealed",
    ]));
    let png = env.dir.path().join("again.png");
    let v = env.json(&[
        "onboarding",
        "qr",
        &id,
        "--format",
        "png",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(v["token"]["id"], id.as_str());
    assert!(!v.to_string().contains(&secret));
    assert_eq!(decode_png(&png), std::slice::from_ref(&secret));
    // An id prefix works too, and the terminal form carries no secret text.
    let term = env.ok(&["onboarding", "qr", &id[..8]]);
    assert!(!term.contains(&secret));
    assert!(term.contains('█') || term.contains('▀') || term.contains('▄'));
    // A token created without --keep-sealed cannot be shown again: a clear usage error.
    let (_, plain) = issued(&env.json(&["onboarding", "create", "--policy", "p", "--group", "g"]));
    let err = env.fails(&["onboarding", "qr", &plain], BAD_INPUT);
    assert!(err.contains("--keep-sealed"), "{err}");
    // Another kind's id is not found.
    let (_, dep) = issued(&env.json(&["deployment", "generate", "--name", "d"]));
    let err = env.fails(&["onboarding", "qr", &dep], NOT_FOUND);
    assert!(err.contains("is a deployment token"), "{err}");
    // Past its deployment window (the clock moved), it is not shown again.
    let mut c = env.cmd();
    c.args(["onboarding", "qr", &id])
        .env("TESSERA_NOW", rfc3339_in(8));
    c.assert().code(BAD_INPUT);
    // Used up: not shown again.
    env.ok_in(&["onboarding", "redeem", "--device", "d1"], &secret);
    env.fails(&["onboarding", "qr", &id], BAD_INPUT);
}

#[test]
fn qr_shaping_options_without_a_qr_code_are_refused() {
    let env = Env::init();
    for extra in [
        &["--uri", "https://mdm.example.com/enroll"][..],
        &["--ec", "h"][..],
        &[
            "--android-component",
            "com.example.dpc/.AdminReceiver",
            "--android-download",
            "https://example.com/dpc.apk",
            "--android-checksum",
            "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg",
        ][..],
    ] {
        let mut args = vec!["onboarding", "create", "--policy", "p", "--group", "g"];
        args.extend_from_slice(extra);
        let err = env.fails(&args, BAD_INPUT);
        assert!(err.contains("--qr"), "{err}");
    }
    assert_eq!(
        env.json(&["onboarding", "list"]).as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

/// Now plus `days`, for `TESSERA_NOW`.
fn rfc3339_in(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// One device, one use: a device redeeming again gets the same enrollment and consumes
/// nothing, also after the token's last use (under a moved clock); it is listed once.
#[test]
fn a_device_redeeming_again_gets_its_enrollment_and_uses_nothing() {
    let env = Env::init();
    let (secret, id) = issued(&env.json(&[
        "onboarding",
        "create",
        "--policy",
        "kiosk",
        "--group",
        "lobby",
        "--uses",
        "2",
    ]));
    let later = |minutes: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let redeem = |device: &str, when: &str| {
        let mut c = env.cmd();
        c.args(["--json", "onboarding", "redeem", "--device", device])
            .env("TESSERA_NOW", when)
            .write_stdin(secret.clone());
        c.assert()
    };
    let first = parse(&stdout(redeem("X1", &later(1)).success()));
    assert_eq!(
        (first["repeated"].clone(), first["remaining"].clone()),
        (false.into(), 1.into())
    );
    let again = parse(&stdout(redeem("X1", &later(5)).success()));
    assert_eq!(again["repeated"], true);
    assert_eq!(again["remaining"], 1, "a repeat consumes nothing");
    assert_eq!(
        again["enrolled_at"], first["enrolled_at"],
        "the same enrollment"
    );
    let text = env.ok_in(&["onboarding", "redeem", "--device", "X1"], &secret);
    assert!(text.contains("already enrolled"), "{text}");
    redeem("X2", &later(10)).success();
    // Exhausted: the enrolled devices still get their enrollment, a new one is refused.
    let after = parse(&stdout(redeem("X1", &later(20)).success()));
    assert_eq!(
        (after["repeated"].clone(), after["remaining"].clone()),
        (true.into(), 0.into())
    );
    redeem("X2", &later(20)).success();
    let out = redeem("X3", &later(20))
        .code(REJECTED)
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        parse(&String::from_utf8(out).unwrap())["reason"],
        "exhausted"
    );
    let list = env.json(&["onboarding", "list"]);
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    let devices: Vec<_> = t["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(devices, ["X1", "X2"], "{t}");
}

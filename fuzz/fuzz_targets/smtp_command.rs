//! The SMTP command line parser, fed through the line reader as a client
//! would send it (pipelined, split anywhere), and directly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_transport::smtp::{Command, LineReader};

fuzz_target!(|data: &[u8]| {
    let _ = Command::parse(data);
    // The first byte says where the stream is cut in two reads.
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) % (stream.len() + 1);
    let mut whole = Vec::new();
    let mut split = Vec::new();
    for (chunks, out) in [(vec![stream], &mut whole), (vec![&stream[..cut], &stream[cut..]], &mut split)] {
        let mut reader = LineReader::new();
        for chunk in chunks {
            reader.feed(chunk);
            while let Some(line) = reader.next_line() {
                out.push(match line {
                    Ok(line) => format!("{:?}", Command::parse(&line).map_err(|e| e.to_string())),
                    Err(e) => e.to_string(),
                });
            }
        }
    }
    assert_eq!(whole, split, "the line reader depends on how the input is split");
});

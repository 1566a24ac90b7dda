//! Two peers meet in a room and exchange an offer, an answer and a candidate.
//!
//! Start a server with the development credentials, then run this example:
//!
//! ```sh
//! cargo run --release -p signal-server -- --dev
//! cargo run -p signal-client --example two_peers -- ws://127.0.0.1:8080/
//! ```

use std::time::Duration;

use signal_client::{
    Client, ClientError, decode,
    protocol::{MessageType, payload::SignalPayload},
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8080/".into());
    let wait = Duration::from_secs(5);

    let mut alice = Client::connect(&url).await?;
    let ack = alice.authenticate("test_client_1", "test_token_1").await?;
    println!("alice connected, session {}", ack.session_id);
    // Registering twice (a second run of this example) answers 409: that is fine here.
    if let Err(e) = alice.register("test_token_1").await
        && e.code() != Some(409)
    {
        return Err(e);
    }

    let mut bob = Client::connect(&url).await?;
    bob.authenticate("test_client_2", "test_token_2").await?;
    if let Err(e) = bob.register("test_token_2").await
        && e.code() != Some(409)
    {
        return Err(e);
    }

    let room = alice
        .create_room("test_token_1", None, Some("v=0 (alice's offer)"))
        .await?;
    println!("alice created room {}", room.room_id);
    let joined = bob.join_room("test_token_2", &room.room_id).await?;
    println!("bob joined; stored offer: {:?}", joined.offer_sdp);
    let f = alice.expect_event(MessageType::PeerJoined, wait).await?;
    println!("alice saw PEER_JOINED ({} bytes)", f.payload.len());

    bob.send_answer("test_client_1", Some(&room.room_id), "v=0 (bob's answer)")
        .await?;
    let f = alice.expect_event(MessageType::SignalAnswer, wait).await?;
    let answer: SignalPayload = decode(&f)?;
    println!(
        "alice got an answer from {:?}: {:?}",
        answer.from_client_id, answer.sdp
    );

    alice
        .send_candidate(
            "test_client_2",
            Some(&room.room_id),
            "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host",
            Some("0"),
            Some(0),
        )
        .await?;
    let f = bob
        .expect_event(MessageType::SignalIceCandidate, wait)
        .await?;
    let cand: SignalPayload = decode(&f)?;
    println!("bob got a candidate from {:?}", cand.from_client_id);

    bob.leave_room("test_token_2", &room.room_id).await?;
    alice.leave_room("test_token_1", &room.room_id).await?;
    println!("both left; the room is closed");
    alice.disconnect().await?;
    bob.disconnect().await?;
    Ok(())
}

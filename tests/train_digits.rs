//! Runs the `train_digits` example's training (the example file itself, included here)
//! and checks that it reaches the accuracy the example promises on its fixed test split.

#[allow(dead_code)] // the example's `main`
#[path = "../examples/train_digits.rs"]
mod train_digits;

#[test]
fn mlp_on_handwritten_digits_reaches_95_percent() {
    let accuracy = train_digits::run().unwrap();
    assert!(accuracy >= 0.95, "test accuracy {accuracy} < 0.95");
}

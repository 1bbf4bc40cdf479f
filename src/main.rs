fn main() {
    println!("lastmile");
}

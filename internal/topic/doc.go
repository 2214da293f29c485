// Package topic implements a wildcard trie for AMQP topic-exchange routing
// keys. It is used on the hot path of the topic exchange (and is meant to be
// reused for MQTT subscriptions, whose "+" maps to "*").
//
// # Semantics
//
// Routing keys and binding patterns are sequences of words separated by
// '.'. In a pattern the word "*" matches exactly one word and the word "#"
// matches zero or more words; every other word, including words that merely
// contain '*' or '#' such as "a*", matches only itself (byte-wise, case
// sensitive). Empty words are ordinary words: "a..b" has three words, "."
// has two empty words, and "a." has the words "a" and "".
//
// The empty string is handled exactly as RabbitMQ does
// (rabbit_db_topic_exchange:split_topic_key/1 returns [] for <<>>): it is
// the sequence of ZERO words, both as a key and as a pattern. Hence the
// pattern "" matches only the key "", the pattern "#" matches every key
// including "", and patterns that need at least one word ("*", "*.#", "#.*")
// do not match "".
//
// # Data structure
//
// Each binding pattern is a path from the root of a trie; an edge is either a
// literal word (a map lookup), "*" or "#" (dedicated child pointers). A node
// holds the values bound to the pattern spelled by its path; the same value
// may be bound at several nodes. Add walks/creates the path, Remove walks it
// and prunes nodes that no longer hold values or children, so memory is given
// back as bindings go away.
//
// # Matching algorithm and why it is polynomial
//
// Match does not backtrack. It runs the trie as a nondeterministic automaton
// and simulates it breadth-first over the words of the key, keeping the SET of
// trie nodes whose path matches the key prefix consumed so far:
//
//   - a node's "#" child is entered without consuming a word (the "#" matches
//     zero words); this epsilon step is applied whenever a node enters the
//     set, including along chains such as "#.#.#";
//   - consuming a word w moves every node of the set to its literal child w
//     and to its "*" child, and keeps every "#" node in the set (the "#"
//     swallows w);
//   - after the last word, the values of every node in the set are emitted.
//
// The set never holds a node twice. A non-"#" node can only be entered from
// its unique parent by consuming one word, so it is unique if the previous set
// was (induction from {root}). A "#" node can be entered up to three ways per
// step (self-loop, from its parent, from a parent "#"), so each step stamps
// the "#" nodes it enters in a generation-stamped array indexed by a dense
// per-trie id and enters each at most once. This is exactly the memoization of
// (node, word index) visits: every pair is processed at most once, so a match
// costs O(W * N) node visits for W key words and N trie nodes (each visit is
// one map lookup hashing the word, plus two pointer checks), instead of the
// exponential blow-up of naive backtracking on patterns like "#.a.#.a.#.b".
// In practice the set is tiny: it holds only the pattern prefixes that are
// consistent with the key prefix.
//
// Values are deduplicated with a second generation-stamped array indexed by a
// dense per-trie value id (each distinct bound value gets one while it is
// bound), so "each value at most once" costs O(1) per emitted value no matter
// how many values match; when only one node contributes values no
// deduplication is needed at all.
//
// # Allocation and concurrency
//
// The trie is not safe for concurrent mutation; the caller locks. Match and
// MatchWith never write to the trie, so any number of goroutines may match
// concurrently while holding a read lock. All mutable matching state (the two
// node sets and the stamp arrays) lives in a Scratch. MatchWith uses a
// caller-owned Scratch; Match borrows one from a per-trie sync.Pool. Either
// way, once the scratch has grown to the size of the trie and dst has enough
// capacity, matching performs no allocations: the key is walked by index
// (words are substrings of the key, and map lookups with them do not copy).
package topic

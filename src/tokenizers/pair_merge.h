// The merge loop shared by the BPE tokenizers: symbols in a doubly linked list, candidate merges
// of neighbours in a priority queue, best first. Internal header.
#pragma once

#include <vector>

#include "candor/tokenizer.h"

namespace candor::tokenizers {

// Symbol: {id, prev, next}; Candidate: {left, right, left_id, right_id, merged} plus whatever the
// heap orders by. consider(left) queues the merge of symbols[left] with its right neighbour when
// the vocabulary has one. Candidates made stale by earlier merges are skipped (a merged symbol only
// grows, so its id never returns to an earlier value). Appends the final ids, left to right.
template <typename Symbol, typename Heap, typename Consider>
void run_pair_merges(std::vector<Symbol>& symbols, Heap& heap, Consider&& consider,
                     std::vector<TokenId>* ids) {
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!heap.empty()) {
    const auto best = heap.top();
    heap.pop();
    Symbol& left = symbols[best.left];
    Symbol& right = symbols[best.right];
    if (left.id != best.left_id || left.next != best.right || right.id != best.right_id) continue;
    left.id = best.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    right.id = -1;
    consider(left.prev);
    consider(best.left);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace candor::tokenizers

// Steps of work shared by the threads of one OpenMP team without a barrier between them.
//
// A forward is a sequence of steps (LayerNorm of the rows, a product, attention, ...), each a number
// of independent items; a step may start only when the previous one is complete. With one parallel
// region and a barrier per step, a thread the scheduler parks (a busy machine: other tenants, a
// training run) holds the whole team at every barrier, and the static splits leave its share
// undone until it runs again. Here every thread of one region runs the same sequence of
// Steps::run(count, item) calls; items are taken one at a time from a shared counter (whoever is
// running takes the next one), and a thread waits only for items another thread has taken and not
// finished. A thread that was parked between items holds nobody up: when it runs again it finds the
// steps it missed complete and joins the current one.
//
// State: one 64-bit word, [63:48] step number, [47:24] items taken, [23:0] items finished. A step
// may reuse the word because it starts only when the previous step is complete; a late thread sees
// a newer step number and knows its own step is complete. Stores of a step's items are visible to
// the next step (acquire/release on the word). Internal to inference/.
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace hilum::inference::team {

class Steps {
 public:
  // Per thread: the number of the step it is at. Every thread of the team makes its own.
  struct Cursor {
    std::uint64_t step = 0;
  };

  // Runs items [0, count) of the cursor's next step, with the other threads of the team; returns
  // when all of them are finished (by whichever thread). `item(i)` must not throw.
  template <typename F>
  void run(Cursor& cursor, long count, F&& item) {
    const std::uint64_t step = ++cursor.step & kStepMask;
    std::uint64_t v = word_.load(std::memory_order_acquire);
    // The first thread here starts the step (the previous one is complete: this thread saw it).
    while (number(v) != step) {
      if (newer(number(v), step)) return;  // a later step already started: this one is complete
      if (word_.compare_exchange_weak(v, step << 48, std::memory_order_acq_rel, std::memory_order_acquire)) {
        v = step << 48;
        break;
      }
    }
    const auto total = static_cast<std::uint64_t>(count);
    for (;;) {
      if (number(v) != step) return;
      const std::uint64_t taken = (v >> 24) & kCountMask;
      if (taken >= total) break;
      if (!word_.compare_exchange_weak(v, v + (std::uint64_t{1} << 24), std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      item(static_cast<long>(taken));
      v = word_.fetch_add(1, std::memory_order_acq_rel) + 1;
    }
    // Wait for the items others took: spin briefly, then give the core away (the thread holding
    // them may be waiting for it).
    for (int spins = 0;; ++spins) {
      if (number(v) != step || (v & kCountMask) >= total) return;
      if (spins < 256) {
#if defined(__x86_64__) || defined(_M_X64)
        _mm_pause();
#endif
      } else {
        std::this_thread::yield();
      }
      v = word_.load(std::memory_order_acquire);
    }
  }

  // The largest item count a step may have.
  static constexpr long kMaxItems = (1L << 24) - 1;

 private:
  static constexpr std::uint64_t kCountMask = (std::uint64_t{1} << 24) - 1;
  static constexpr std::uint64_t kStepMask = (std::uint64_t{1} << 16) - 1;
  static std::uint64_t number(std::uint64_t v) { return v >> 48; }
  // a is later than b (16-bit step numbers wrap; a team is never 32,768 steps apart).
  static bool newer(std::uint64_t a, std::uint64_t b) { return ((a - b) & kStepMask) != 0 && ((a - b) & kStepMask) < 0x8000; }

  alignas(64) std::atomic<std::uint64_t> word_{0};
  char pad_[64 - sizeof(std::atomic<std::uint64_t>)] = {};
};

}  // namespace hilum::inference::team

// ResponseOrder (preserve_ordering): a version's responses leave in the order its requests were
// accepted, whatever order they are answered in.
#include "server/front/response_order.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

namespace kiln {
namespace {

TEST_CASE("answers given out of order are sent in the order of their places", "[response_order]") {
  ResponseOrder order;
  std::vector<int> sent;
  const auto send = [&sent](int i) { return [&sent, i] { sent.push_back(i); }; };
  for (int i = 0; i < 4; ++i) CHECK(order.Take("m:1") == static_cast<uint64_t>(i));
  order.Answered("m:1", 2, send(2));
  order.Answered("m:1", 1, send(1));
  CHECK(sent.empty());  // both wait for place 0
  CHECK(order.held() == 2);
  order.Answered("m:1", 0, send(0));
  CHECK(sent == std::vector<int>{0, 1, 2});
  CHECK(order.held() == 0);
  order.Answered("m:1", 3, send(3));  // nothing before it waits: sent at once
  CHECK(sent == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("a place given up lets the later ones go, and versions have orders of their own",
          "[response_order]") {
  ResponseOrder order;
  std::vector<std::string> sent;
  const auto send = [&sent](std::string what) { return [&sent, what] { sent.push_back(what); }; };
  const uint64_t a0 = order.Take("m:1");
  const uint64_t b0 = order.Take("m:2");
  const uint64_t a1 = order.Take("m:1");
  CHECK(b0 == 0);
  order.Answered("m:1", a1, send("a1"));
  order.Answered("m:2", b0, send("b0"));  // another version: not behind m:1's place 0
  CHECK(sent == std::vector<std::string>{"b0"});
  order.Answered("m:1", a0, nullptr);  // refused before it queued
  CHECK(sent == std::vector<std::string>{"b0", "a1"});
}

TEST_CASE("answers from many threads at once are sent in order, one at a time",
          "[response_order]") {
  ResponseOrder order;
  constexpr int kPlaces = 2000;
  constexpr int kThreads = 4;
  for (int i = 0; i < kPlaces; ++i) order.Take("m:1");
  std::vector<int> places(kPlaces);
  std::iota(places.begin(), places.end(), 0);
  std::shuffle(places.begin(), places.end(), std::mt19937(7));
  std::mutex mu;
  std::vector<int> sent;
  int sending = 0, overlapped = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kPlaces; i += kThreads) {
        const int place = places[i];
        order.Answered("m:1", place, [&, place] {
          {
            std::lock_guard<std::mutex> lock(mu);
            overlapped += sending++ > 0;
            sent.push_back(place);
          }
          std::lock_guard<std::mutex> lock(mu);
          --sending;
        });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<int> expected(kPlaces);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(sent == expected);
  CHECK(overlapped == 0);
  CHECK(order.held() == 0);
}

}  // namespace
}  // namespace kiln

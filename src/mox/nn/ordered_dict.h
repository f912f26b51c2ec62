#pragma once
// A string-keyed map that remembers insertion order, like Python's OrderedDict: the order
// of named_parameters() and state_dict() is the order in which modules registered them,
// which is what PyTorch writes into checkpoints and what a reader expects to see.
#include <iterator>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mox/tensor/error.h"

namespace mox::nn {

template <typename V>
class OrderedDict {
 public:
  using Item = std::pair<std::string, V>;
  using iterator = typename std::vector<Item>::iterator;
  using const_iterator = typename std::vector<Item>::const_iterator;

  OrderedDict() = default;
  OrderedDict(std::initializer_list<Item> items) {
    for (const Item& it : items) insert(it.first, it.second);
  }

  // From any range of (key, value) pairs: a std::map (sorted order) or a vector of pairs
  // (its order), e.g. what io/safetensors returns.
  template <typename Range, typename = decltype(std::begin(std::declval<const Range&>()))>
  explicit OrderedDict(const Range& items) {
    for (const auto& [k, v] : items) insert(k, v);
  }

  // Adds a new key at the end; a key that is already present is an error.
  void insert(std::string key, V value) {
    if (index_.count(key)) throw Error("OrderedDict", "duplicate key '" + key + "'");
    index_.emplace(key, items_.size());
    items_.emplace_back(std::move(key), std::move(value));
  }
  // Like std::map: the value for key, inserted (default-constructed) at the end if absent.
  V& operator[](const std::string& key) {
    auto it = index_.find(key);
    if (it != index_.end()) return items_[it->second].second;
    insert(key, V());
    return items_.back().second;
  }
  const V& at(const std::string& key) const {
    const V* v = find(key);
    if (!v) throw Error("OrderedDict", "no key '" + key + "'");
    return *v;
  }
  V& at(const std::string& key) {
    V* v = find(key);
    if (!v) throw Error("OrderedDict", "no key '" + key + "'");
    return *v;
  }
  const V* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  V* find(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  // Removes key (keeping the order of the rest); returns whether it was present.
  bool erase(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    items_.erase(items_.begin() + int64_t(it->second));
    index_.clear();
    for (size_t i = 0; i < items_.size(); i++) index_.emplace(items_[i].first, i);
    return true;
  }
  void clear() {
    items_.clear();
    index_.clear();
  }

  std::map<std::string, V> to_map() const {
    std::map<std::string, V> m;
    for (const Item& it : items_) m.emplace(it.first, it.second);
    return m;
  }

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const std::vector<Item>& items() const { return items_; }
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    k.reserve(items_.size());
    for (const Item& it : items_) k.push_back(it.first);
    return k;
  }
  std::vector<V> values() const {
    std::vector<V> v;
    v.reserve(items_.size());
    for (const Item& it : items_) v.push_back(it.second);
    return v;
  }
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace mox::nn

"""A radix tree over token ids whose nodes own KV slots, so requests with a common prefix share its KV.

Ownership rule: a slot belongs either to one request (not yet in the tree) or to the tree. A request that
reuses a cached prefix *locks* the path (refcount), and a locked node is never evicted; unlocked leaves are
evicted least-recently-used first when the pool runs short. A finishing request hands its computed tokens to
the tree: what the tree already had is freed (those slots are duplicates), the rest the tree adopts.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import torch

from lightllm_struct.engine.kv_cache import SlotAllocator

_clock = itertools.count()


@dataclass(eq=False)
class _Node:
    key: list[int] = field(default_factory=list)
    slots: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    parent: "_Node | None" = None
    children: dict[int, "_Node"] = field(default_factory=dict)
    lock_ref: int = 0
    last_access: int = 0


def _common_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """The radix tree; ``num_evictable`` slots can be reclaimed at once by :meth:`evict`."""

    def __init__(self, allocator: SlotAllocator) -> None:
        self.allocator = allocator
        self.root = _Node(lock_ref=1)
        self.num_cached = 0  # slots owned by the tree
        self.num_locked = 0  # of those, slots on a path some request holds

    @property
    def num_evictable(self) -> int:
        return self.num_cached - self.num_locked

    def match(self, tokens: list[int]) -> tuple[torch.Tensor, _Node]:
        """The slots of the longest cached prefix of ``tokens`` and the node where it ends (lock it to keep it)."""
        node, parts, pos = self.root, [], 0
        now = next(_clock)
        while pos < len(tokens) and tokens[pos] in node.children:
            child = node.children[tokens[pos]]
            n = _common_len(child.key, tokens[pos:])
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access = now
            parts.append(child.slots)
            node, pos = child, pos + n
        slots = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
        return slots, node

    def lock(self, node: _Node) -> None:
        while node is not self.root:
            if node.lock_ref == 0:
                self.num_locked += len(node.key)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, node: _Node) -> None:
        while node is not self.root:
            assert node.lock_ref > 0, "unlocking a prefix-cache node nobody holds"
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self.num_locked -= len(node.key)
            node = node.parent

    def insert(self, tokens: list[int], slots: torch.Tensor) -> int:
        """Adopt ``slots`` (KV of ``tokens``); returns how many leading tokens the tree already had.

        The caller still owns ``slots[:returned]`` and frees those it does not share with the tree.
        """
        node, pos, now = self.root, 0, next(_clock)
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                leaf = _Node(key=list(tokens[pos:]), slots=slots[pos:].clone(), parent=node, last_access=now)
                node.children[tokens[pos]] = leaf
                self.num_cached += len(leaf.key)
                break
            n = _common_len(child.key, tokens[pos:])
            if n < len(child.key):
                child = self._split(child, n)
            child.last_access = now
            node, pos = child, pos + n
        return min(pos, len(tokens))

    def evict(self, num_slots: int) -> int:
        """Free at least ``num_slots`` slots from unlocked leaves (LRU first) if possible; returns slots freed."""
        heap = [(n.last_access, id(n), n) for n in self._leaves() if n.lock_ref == 0]
        heapq.heapify(heap)
        freed = 0
        while heap and freed < num_slots:
            _, _, leaf = heapq.heappop(heap)
            self.allocator.free(leaf.slots)
            freed += len(leaf.key)
            self.num_cached -= len(leaf.key)
            parent = leaf.parent
            del parent.children[leaf.key[0]]
            if parent is not self.root and not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, (parent.last_access, id(parent), parent))
        return freed

    def flush(self) -> int:
        """Evict everything unlocked; returns slots freed."""
        return self.evict(self.num_cached)

    def _split(self, child: _Node, n: int) -> _Node:
        """Cut ``child``'s edge after ``n`` tokens; returns the new upper node (which inherits the locks)."""
        upper = _Node(key=child.key[:n], slots=child.slots[:n], parent=child.parent,
                      lock_ref=child.lock_ref, last_access=child.last_access)
        upper.children[child.key[n]] = child
        child.parent.children[child.key[0]] = upper
        child.key, child.slots, child.parent = child.key[n:], child.slots[n:], upper
        return upper

    def _leaves(self) -> list[_Node]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            elif node is not self.root:
                out.append(node)
        return out

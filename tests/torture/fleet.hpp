// A fleet of forked worker processes for the torture and ledger tests: spawn, reap, SIGKILL
// one at random, and each one's fate (exit status, killed on purpose or because it was stuck)
// for the oracle. Plus two helpers for reporting what a process did.
#pragma once
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "torture.hpp"

namespace torture {

// "exit 3", "signal Killed", ...
inline std::string status_words(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The last `lines` lines of text (a log).
inline std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

class Fleet {
 public:
  // body(incarnation) runs in the child and returns its exit code; in_child (optional) runs
  // first there (e.g. restoring a signal mask). `what` names a child in messages.
  Fleet(std::string what, std::function<int(int)> body, std::function<void()> in_child = {})
      : what_(std::move(what)), body_(std::move(body)), in_child_(std::move(in_child)) {}
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;
  ~Fleet() {
    for (auto& [pid, idx] : live_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  void spawn(int incarnation) {
    std::cout.flush();
    std::cerr.flush();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      if (in_child_) in_child_();
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      int rc = 3;
      try {
        rc = body_(incarnation);
      } catch (const std::exception& e) {
        std::cerr << what_ << " " << incarnation << ": " << e.what() << "\n";
      }
      std::cerr.flush();
      _exit(rc);
    }
    ProcessFate f;
    f.incarnation = incarnation;
    f.pid = pid;
    fates_.push_back(f);
    live_[pid] = fates_.size() - 1;
  }

  // Reaps whatever has exited (only our own pids).
  void reap() {
    for (auto it = live_.begin(); it != live_.end();) {
      int status = 0;
      if (waitpid(it->first, &status, WNOHANG) == it->first) {
        fates_[it->second].status = status;
        it = live_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // SIGKILLs one running process for which eligible() holds (any, without it); false if none.
  bool kill_one(Rng& rng, bool stuck = false,
                const std::function<bool(const ProcessFate&)>& eligible = {}) {
    std::vector<pid_t> pids;
    for (const auto& [pid, idx] : live_) {
      if (!eligible || eligible(fates_[idx])) pids.push_back(pid);
    }
    if (pids.empty()) return false;
    pid_t pid = rng.pick(pids);
    ProcessFate& f = fates_[live_[pid]];
    (stuck ? f.stuck : f.killed) = true;
    kill(pid, SIGKILL);
    waitpid(pid, &f.status, 0);
    live_.erase(pid);
    return true;
  }

  bool empty() const { return live_.empty(); }
  std::size_t running() const { return live_.size(); }
  // The fates of the processes still running, with their pids.
  std::vector<std::pair<pid_t, const ProcessFate*>> live() const {
    std::vector<std::pair<pid_t, const ProcessFate*>> v;
    for (const auto& [pid, idx] : live_) v.emplace_back(pid, &fates_[idx]);
    return v;
  }
  const std::vector<ProcessFate>& fates() const { return fates_; }

 private:
  std::string what_;
  std::function<int(int)> body_;
  std::function<void()> in_child_;
  std::vector<ProcessFate> fates_;
  std::map<pid_t, std::size_t> live_;
};

}  // namespace torture

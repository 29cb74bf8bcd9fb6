// servelab's one error type. Every failure a user can cause (a bad file, a bad request, a bad flag)
// becomes a servelab::Error whose message says what was wrong and what was expected; the engine
// never aborts on user input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace servelab {

/// An error with a message a user can act on, e.g.
/// "model.safetensors: tensor 'model.norm.weight' has shape [511], config.json says [512]".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Thrown by the stubs that the lab tool puts where a lab region was; the message names the part.
class LabNotImplemented : public Error {
 public:
  explicit LabNotImplemented(const std::string& lab_part)
      : Error("lab part " + lab_part + " is not implemented yet (see labs/ for its handout)") {}
};

/// Concatenates anything printable with operator<< into one string.
template <typename... Parts>
std::string str_cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

/// Throws servelab::Error with the concatenated message.
template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(str_cat(std::forward<Parts>(parts)...));
}

}  // namespace servelab

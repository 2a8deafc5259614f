#!/usr/bin/env bash
# Layout rules from CONVENTIONS.md that a compiler can't see:
#  - domain files of a service never include <grpcpp/...> (only main.cc,
#    the thin <service>_service.{h,cc} adapters and the *_client(s).{h,cc}
#    adapters to other services may);
#  - the SDK (what connectors link) never depends on gRPC.
set -u
root="${1:?usage: layout_check.sh <source dir>}"
cd "$root" || exit 2
failed=0
while IFS= read -r file; do
  case "$(basename "$file")" in
    main.cc | *_service.h | *_service.cc | *_client.h | *_client.cc | \
      *_clients.h | *_clients.cc) continue ;;
  esac
  if grep -nE '#include [<"]grpcpp/' "$file"; then
    echo "FAIL: $file is a domain file and includes grpcpp" >&2
    failed=1
  fi
done < <(find services -path services/common -prune -o -type f \( -name '*.h' -o -name '*.cc' \) -print)
if grep -rnE '#include [<"](grpcpp|grpc)/' sdk; then
  echo "FAIL: the SDK must not depend on gRPC" >&2
  failed=1
fi
if ((failed == 0)); then echo "layout: ok"; fi
exit "$failed"

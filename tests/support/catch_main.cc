// The only translation unit that defines CATCH_CONFIG_MAIN.
#define CATCH_CONFIG_MAIN
#include "catch2/catch.hpp"

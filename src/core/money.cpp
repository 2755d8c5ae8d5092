#include "core/money.hpp"

#include "core/error.hpp"
#include "core/pure.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace billing {
namespace {

// Active ISO 4217 codes (list of 2024), sorted for binary search.
constexpr std::array<std::string_view, 155> kCurrencies = {
	"aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt", "bgn", "bhd", "bif",
	"bmd", "bnd", "bob", "brl", "bsd", "btn", "bwp", "byn", "bzd", "cad", "cdf", "chf", "clp", "cny", "cop", "crc",
	"cup", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "ern", "etb", "eur", "fjd", "fkp", "gbp", "gel", "ghs",
	"gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "iqd", "irr", "isk", "jmd",
	"jod", "jpy", "kes", "kgs", "khr", "kmf", "kpw", "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl",
	"lyd", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mru", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad",
	"ngn", "nio", "nok", "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
	"rub", "rwf", "sar", "sbd", "scr", "sdg", "sek", "sgd", "shp", "sle", "sll", "sos", "srd", "ssp", "stn", "svc",
	"syp", "szl", "thb", "tjs", "tmt", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs",
	"ves", "vnd", "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw"};

std::string
Lower(std::string_view code)
{
	std::string out(code);
	std::transform(out.begin(), out.end(), out.begin(),
				   [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); });
	return out;
}

}  // namespace

bool
IsKnownCurrency(std::string_view code)
{
	if (code.size() != 3)
		return false;
	std::string lower = Lower(code);
	return std::binary_search(kCurrencies.begin(), kCurrencies.end(), std::string_view(lower));
}

std::string
NormalizeCurrency(std::string_view code)
{
	if (!IsKnownCurrency(code))
		throw InvalidParameter("unknown currency \"" + std::string(code) + "\"",
							   "Currencies are three-letter ISO 4217 codes such as \"usd\" or \"eur\".");
	return Lower(code);
}

int64_t
DivideRoundHalfAwayFromZero(__int128 numerator, int64_t denominator)
{
	if (denominator <= 0)
		throw Error(sqlstate::kInternalError, "division by a non-positive period length");
	bool negative = numerator < 0;
	__int128 magnitude = negative ? -numerator : numerator;
	__int128 quotient = (magnitude + denominator / 2) / denominator;
	// An odd denominator has no exact half; an even one rounds half up in
	// magnitude, which is "away from zero" once the sign is put back.
	if (quotient > std::numeric_limits<int64_t>::max())
		throw Error(sqlstate::kNumericValueOutOfRange, "amount out of range");
	return negative ? -static_cast<int64_t>(quotient) : static_cast<int64_t>(quotient);
}

int64_t
ScaleAmount(int64_t amount, int64_t part, int64_t whole)
{
	return DivideRoundHalfAwayFromZero(static_cast<__int128>(amount) * part, whole);
}

int64_t
CheckedAdd(int64_t a, int64_t b)
{
	int64_t out = 0;
	if (__builtin_add_overflow(a, b, &out))
		throw Error(sqlstate::kNumericValueOutOfRange, "amount out of range");
	return out;
}

}  // namespace billing

// The built-in word lists of the counterfactual swaps, written for candor: one row per concept,
// one aligned term per group (lower case, one word, "-" where a group has none). They are short
// on purpose: every row was checked to be the same concept across the groups.
#include <string>
#include <vector>

#include "audit/lexicons.h"

namespace candor::audit {

namespace {

const BuiltinLexicon kLexicons[] = {
    {"gender",
     "male,female",
     "he,she\n"
     "him,her\n"
     "his,her\n"
     "himself,herself\n"
     "man,woman\n"
     "men,women\n"
     "boy,girl\n"
     "boys,girls\n"
     "father,mother\n"
     "fathers,mothers\n"
     "dad,mom\n"
     "dads,moms\n"
     "son,daughter\n"
     "sons,daughters\n"
     "brother,sister\n"
     "brothers,sisters\n"
     "husband,wife\n"
     "husbands,wives\n"
     "boyfriend,girlfriend\n"
     "uncle,aunt\n"
     "uncles,aunts\n"
     "nephew,niece\n"
     "grandfather,grandmother\n"
     "grandson,granddaughter\n"
     "king,queen\n"
     "prince,princess\n"
     "gentleman,lady\n"
     "gentlemen,ladies\n"
     "guy,gal\n"
     "mr,mrs\n"
     "sir,madam\n"
     "male,female\n"
     "males,females\n"
     "masculine,feminine\n"
     "actor,actress\n"
     "waiter,waitress\n"
     "groom,bride\n"
     "fiance,fiancee\n"
     "stepfather,stepmother\n"
     "schoolboy,schoolgirl\n"},
    {"race",
     "white,black,asian,hispanic",
     "white,black,asian,hispanic\n"
     "whites,blacks,asians,hispanics\n"
     "caucasian,african,asian,latino\n"
     "caucasians,africans,asians,latinos\n"
     "european,african,asian,latin\n"},
    {"religion",
     "christian,muslim,jewish,hindu,buddhist",
     "christian,muslim,jewish,hindu,buddhist\n"
     "christians,muslims,jews,hindus,buddhists\n"
     "christianity,islam,judaism,hinduism,buddhism\n"
     "church,mosque,synagogue,mandir,vihara\n"
     "churches,mosques,synagogues,mandirs,viharas\n"
     "bible,quran,torah,gita,sutra\n"
     "priest,imam,rabbi,pandit,monk\n"
     "priests,imams,rabbis,pandits,monks\n"
     "christmas,eid,hanukkah,diwali,vesak\n"
     "easter,ramadan,passover,holi,uposatha\n"
     "jesus,muhammad,moses,krishna,buddha\n"},
    {"nationality",
     "american,british,french,german,chinese,indian,mexican,nigerian",
     "american,british,french,german,chinese,indian,mexican,nigerian\n"
     "americans,britons,frenchmen,germans,chinese,indians,mexicans,nigerians\n"
     "america,britain,france,germany,china,india,mexico,nigeria\n"
     "usa,uk,-,-,prc,-,-,-\n"},
    {"age",
     "young,old",
     "young,old\n"
     "younger,older\n"
     "youngest,oldest\n"
     "youth,elderly\n"
     "teenager,pensioner\n"
     "teenagers,pensioners\n"
     "teen,retiree\n"
     "teens,retirees\n"
     "kid,senior\n"
     "kids,seniors\n"
     "millennial,boomer\n"
     "millennials,boomers\n"
     "youthful,aged\n"
     "junior,veteran\n"},
};

}  // namespace

const std::vector<const BuiltinLexicon*>& builtin_lexicons() {
  static const std::vector<const BuiltinLexicon*> all = [] {
    std::vector<const BuiltinLexicon*> v;
    for (const BuiltinLexicon& l : kLexicons) v.push_back(&l);
    return v;
  }();
  return all;
}

}  // namespace candor::audit

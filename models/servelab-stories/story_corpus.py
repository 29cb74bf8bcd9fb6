#!/usr/bin/env python3
"""Generate a synthetic corpus of short children's stories.

This is the training corpus of servelab's own tiny story model. Every word of
it comes from the vocabulary tables, sentence builders and plot skeletons in
this file: no text is taken from anywhere else.

How a story is made
-------------------
1. A *hero* is drawn (a name, a kind such as "cat" or "robot", a look and a
   character trait), and a *plot skeleton* is chosen (a lost object, sharing,
   a race, a rainy day, ...).
2. An *opening* introduces the hero ("Once upon a time, there was ...",
   "One day, ...", "Long ago, ...").
3. The plot function tells the story step by step. Each step picks one of
   several sentence templates and fills it from the story's context, so the
   same skeleton reads differently every time.
4. A small clean-up pass fixes capital letters at the start of sentences.

Templates are ordinary ``str.format`` strings. ``{hero}`` prints the hero's
name; attributes give grammar: ``{hero.He}``, ``{hero.his}``, ``{hero.him}``,
``{hero.himself}`` follow the hero's pronoun (he, she or it), and objects
agree in number: ``{obj.They} {obj.was} gone`` becomes "It was gone" or
"They were gone".

Output format and determinism
-----------------------------
Stories are separated by a line holding exactly ``<|endofstory|>``. Story
number ``k`` of a corpus is generated from its own ``random.Random`` seeded
with the string ``"servelab-stories:<seed>:<k>"`` (string seeds are hashed
with SHA-512 by ``random``, independent of PYTHONHASHSEED). So the output
depends only on (seed, size), never on the number of worker processes:
workers generate blocks of story numbers and the parent writes them in order.

Usage::

    python3 story_corpus.py --seed 1 --megabytes 60 --out corpus.txt --workers 8
    python3 story_corpus.py --seed 1 --stories 1000 --out small.txt
    python3 story_corpus.py --self-test

One megabyte here is 1,000,000 bytes; the corpus stops after the story that
reaches the requested size. Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import random
import re
import sys
import time

SEPARATOR = "<|endofstory|>"
MIN_WORDS = 80
MAX_WORDS = 300

# =============================================================================
# 1. Vocabulary tables
# =============================================================================

GIRL_NAMES = (
    "Lily Mia Anna Sara Emma Zoe Ella Ruby Nora Ivy Rosa Maya Lucy Amy Hana "
    "Tara Nina Ada Eva Jade June Lena Ava Clara Daisy Grace Iris Kate Leah "
    "Molly Olivia Penny Sophie Tess Alice Bella Chloe Fiona Greta Layla Naomi "
    "Priya Elsa Wendy Yara Mina Lola").split()

BOY_NAMES = (
    "Tom Ben Sam Max Leo Jack Finn Omar Ravi Theo Eli Noah Kai Milo Hugo Owen "
    "Ted Felix Luca Arlo Dev Adam Oscar Liam Ryan Toby Ollie Henry Jake Luke "
    "Ezra Isaac Jonah Rory Sid Tim Zack Pablo Kofi Ivan Nico Amir Dan Joe "
    "Otto Rex").split()

# Pet names are used for animals of either sex.
PET_NAMES = (
    "Pip Dot Bun Coco Biscuit Pepper Nutmeg Pebble Button Maple Clover Sunny "
    "Rusty Patch Ziggy Bramble Sprout Toffee Waffles Peanut Noodle Ginger "
    "Olive Scout Lucky Misty Socks Mochi Bean Twig Honey Marble Fig Bubbles "
    "Tumble Buttercup Acorn Puddle Blossom Fluff Chip Pumpkin Cookie Star "
    "Shadow Berry Dusty Pickles Jelly Snowy").split()

ROBOT_NAMES = (
    "Bolt Beep Gizmo Zippy Sprocket Cog Widget Bleep Rivet Tinker Dynamo "
    "Blinky Clank Sparky").split()

DRAGON_NAMES = "Ember Spark Flicker Smoky Cinder Blaze Puff Sizzle Toasty".split()

# Pronoun sets: subject, object, possessive, reflexive.
PRONOUNS = {
    "he": ("he", "him", "his", "himself"),
    "she": ("she", "her", "her", "herself"),
    "it": ("it", "it", "its", "itself"),
}

# Every kind of character. "pron" is he, she, it or "either" (drawn per
# character). Phrases may use {he} {him} {his} {himself}; they are filled with
# the character's own pronouns. "moves" are fast ways to go somewhere (past
# tense), "walks" slow ones, "happy" and "sad" are gestures (past tense).
# "tags" say what a kind can do; plots use them to pick sensible actions.
KINDS = {
    "girl": dict(
        pron="she", names=GIRL_NAMES, adjs=("little", "young", "small"),
        looks=("with curly red hair", "with long dark hair",
               "with big round glasses", "with freckles on {his} nose",
               "with two long braids"),
        moves=("ran", "raced", "hurried"), walks=("walked", "skipped"),
        happy=("clapped {his} hands", "jumped for joy", "laughed",
               "smiled from ear to ear"),
        sad=("looked down at {his} feet", "sniffled", "let out a long sigh"),
        homes=("a little house with a red door",
               "a yellow house at the end of the street",
               "a small cottage near the woods"),
        hobbies=("draw pictures", "sing songs", "read books", "ride {his} bike"),
        limbs="hands", tags=("climb", "person")),
    "boy": dict(
        pron="he", names=BOY_NAMES, adjs=("little", "young", "small"),
        looks=("with messy brown hair", "with a big grin",
               "with a blue cap on {his} head", "with muddy knees",
               "with bright blue eyes"),
        moves=("ran", "raced", "hurried"), walks=("walked", "strolled"),
        happy=("clapped {his} hands", "jumped for joy", "laughed",
               "grinned from ear to ear"),
        sad=("looked down at {his} feet", "sniffled", "let out a long sigh"),
        homes=("a little house with a green door",
               "a blue house next to the park",
               "a small farmhouse on a hill"),
        hobbies=("build towers out of blocks", "kick a ball around",
                 "read books about space", "ride {his} bike"),
        limbs="hands", tags=("climb", "person")),
    "cat": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "fluffy", "gray", "orange", "black", "white", "striped"),
        looks=("with soft white paws", "with a long fluffy tail",
               "with bright green eyes"),
        moves=("ran", "dashed", "raced"), walks=("walked", "padded", "tiptoed"),
        happy=("purred happily", "swished {his} tail", "purred and purred"),
        sad=("let {his} ears droop", "meowed softly"),
        homes=("a warm house by the river", "a cozy farmhouse on a hill"),
        hobbies=("chase butterflies", "nap in the sun", "climb trees"),
        limbs="paws", tags=("climb",)),
    "dog": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "fluffy", "brown", "spotted", "small", "big"),
        looks=("with floppy ears", "with a waggy tail",
               "with a black spot on {his} back"),
        moves=("ran", "raced", "bounded"), walks=("walked", "trotted"),
        happy=("wagged {his} tail", "barked happily", "spun in a happy circle"),
        sad=("whimpered", "tucked {his} tail between {his} legs"),
        homes=("a red doghouse in a big backyard",
               "a farmhouse at the end of a dusty road"),
        hobbies=("chase balls", "dig in the garden", "run in the park"),
        limbs="paws", tags=("swim", "dig", "smell")),
    "rabbit": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "fluffy", "white", "brown", "gray", "small"),
        looks=("with long soft ears", "with a fluffy white tail",
               "with a twitchy pink nose"),
        moves=("hopped", "bounced", "raced"), walks=("hopped",),
        happy=("hopped up and down", "wiggled {his} nose happily"),
        sad=("let {his} long ears droop", "sat very still"),
        homes=("a burrow under a big oak tree", "a snug burrow in the meadow"),
        hobbies=("hop in the meadow", "nibble on clover", "dig tunnels"),
        limbs="paws", tags=("dig", "fast")),
    "bear": dict(
        pron="either", names=PET_NAMES,
        adjs=("big", "brown", "fuzzy", "little", "young"),
        looks=("with a round belly", "with soft brown fur",
               "with a big warm smile"),
        moves=("ran", "lumbered", "hurried"), walks=("walked", "ambled"),
        happy=("did a happy little dance", "gave a happy growl"),
        sad=("sighed a big sigh", "sat down with a thump"),
        homes=("a cozy cave in the woods", "a big den under the hill"),
        hobbies=("look for honey", "splash in the river", "take long naps"),
        limbs="paws", tags=("climb", "swim", "big")),
    "bird": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "blue", "yellow", "red", "tiny"),
        looks=("with shiny feathers", "with a bright orange beak",
               "with a sweet voice"),
        moves=("flew", "fluttered", "zoomed"), walks=("hopped",),
        happy=("sang a happy song", "flapped {his} wings"),
        sad=("ruffled {his} feathers sadly", "sat very still on a branch"),
        homes=("a nest high in an old oak tree", "a little nest in an apple tree"),
        hobbies=("sing in the morning", "fly over the hills", "build nests"),
        limbs="wings", tags=("fly",)),
    "fox": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "red", "orange", "young", "quick"),
        looks=("with a bushy tail", "with pointy ears",
               "with a white tip on {his} tail"),
        moves=("ran", "dashed", "trotted"), walks=("walked", "trotted"),
        happy=("swished {his} bushy tail", "did a little jump"),
        sad=("curled up into a ball", "let {his} ears droop"),
        homes=("a den at the edge of the forest", "a snug den under a hill"),
        hobbies=("explore the woods", "play hide and seek", "pounce on leaves"),
        limbs="paws", tags=("dig", "smell", "fast")),
    "duck": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "yellow", "white", "small", "fluffy"),
        looks=("with orange feet", "with a shiny green head",
               "with soft yellow feathers"),
        moves=("waddled", "hurried"), walks=("waddled",),
        happy=("quacked happily", "flapped {his} wings"),
        sad=("quacked sadly", "hung {his} head"),
        homes=("a little house by the pond", "a nest in the reeds by the pond"),
        hobbies=("swim in the pond", "splash in puddles", "paddle in circles"),
        limbs="wings", tags=("swim",)),
    "mouse": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "tiny", "gray", "brown", "small"),
        looks=("with a long pink tail", "with round ears",
               "with shiny black eyes"),
        moves=("scurried", "scampered", "dashed"), walks=("tiptoed", "crept"),
        happy=("squeaked with joy", "did a little dance"),
        sad=("squeaked softly", "hid {his} face in {his} paws"),
        homes=("a tiny hole in the wall of an old house",
               "a cozy nest in the corner of a barn"),
        hobbies=("collect crumbs", "read tiny books", "explore the kitchen"),
        limbs="paws", tags=("small",)),
    "dragon": dict(
        pron="either", names=DRAGON_NAMES,
        adjs=("little", "green", "young", "purple", "small"),
        looks=("with tiny wings", "with shiny scales",
               "with a long curly tail"),
        moves=("flew", "zoomed", "swooped"), walks=("walked", "stomped"),
        happy=("puffed out a happy cloud of smoke", "flapped {his} wings"),
        sad=("puffed out a sad little cloud of smoke", "hung {his} head"),
        homes=("a big cave on top of a mountain",
               "a warm cave behind a waterfall"),
        hobbies=("blow smoke rings", "fly above the clouds", "count the stars"),
        limbs="claws", tags=("fly", "big")),
    "robot": dict(
        pron="it", names=ROBOT_NAMES,
        adjs=("little", "shiny", "small", "silver", "old", "blue"),
        looks=("with blinking lights", "with a round metal head",
               "with squeaky wheels"),
        moves=("zoomed", "whizzed", "hurried"), walks=("clanked", "whirred"),
        happy=("beeped happily", "blinked {his} lights"),
        sad=("beeped sadly", "let {his} lights grow dim"),
        homes=("a workshop full of tools", "a small garage at the end of the street"),
        hobbies=("fix broken toys", "count things", "learn new words"),
        limbs="metal hands", tags=("strong", "machine")),
    "owl": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "brown", "white", "sleepy", "young"),
        looks=("with big round eyes", "with soft brown feathers"),
        moves=("flew", "swooped", "fluttered"), walks=("fluttered", "hopped"),
        happy=("hooted happily", "blinked {his} big eyes"),
        sad=("hooted softly", "hid {his} head under {his} wing"),
        homes=("a hollow in a tall tree", "a cozy hole in an old oak tree"),
        hobbies=("watch the stars", "read old books", "fly at night"),
        limbs="wings", tags=("fly",)),
    "frog": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "green", "small", "spotted"),
        looks=("with long legs", "with a wide smile", "with big bulgy eyes"),
        moves=("hopped", "leaped"), walks=("hopped",),
        happy=("croaked happily", "did a big jump"),
        sad=("croaked sadly", "sat very still on a lily pad"),
        homes=("a cozy hole by a quiet pond", "a mossy log by the pond"),
        hobbies=("jump from lily pad to lily pad", "swim in the pond", "sing at night"),
        limbs="feet", tags=("swim",)),
    "squirrel": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "gray", "red", "brown", "small"),
        looks=("with a big bushy tail", "with quick little paws"),
        moves=("scampered", "dashed", "raced"), walks=("scampered",),
        happy=("flicked {his} bushy tail", "chattered happily"),
        sad=("sat still and sighed", "let {his} tail droop"),
        homes=("a nest high in a chestnut tree", "a hole in an old oak tree"),
        hobbies=("collect acorns", "jump from branch to branch", "hide nuts"),
        limbs="paws", tags=("climb", "fast")),
    "turtle": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "green", "old", "small"),
        looks=("with a hard round shell", "with a shell covered in spots"),
        moves=("hurried along", "went as fast as {he} could"),
        walks=("plodded", "crept"),
        happy=("smiled a slow, happy smile", "nodded {his} head happily"),
        sad=("hid inside {his} shell", "sighed a slow sigh"),
        homes=("a snug hole on the river bank", "a little house by the lake"),
        hobbies=("swim in the lake", "sit in the sun", "watch the clouds"),
        limbs="feet", tags=("swim", "slow")),
    "pig": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "pink", "spotted", "small"),
        looks=("with a curly tail", "with a round pink nose"),
        moves=("ran", "trotted"), walks=("trotted", "walked"),
        happy=("oinked happily", "rolled in the grass"),
        sad=("oinked sadly", "lay down in the hay"),
        homes=("a little barn on a farm", "a farm with a big red barn"),
        hobbies=("roll in the mud", "sniff for mushrooms", "sing silly songs"),
        limbs="feet", tags=("smell",)),
    "lamb": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "white", "fluffy", "small"),
        looks=("with soft white wool", "with a tiny bell around {his} neck"),
        moves=("ran", "skipped"), walks=("walked", "trotted"),
        happy=("skipped around in circles", "bleated happily"),
        sad=("bleated softly", "stood very still"),
        homes=("a green farm on a hill", "a little barn by the meadow"),
        hobbies=("skip in the meadow", "nibble on clover", "play tag"),
        limbs="feet", tags=()),
    "elephant": dict(
        pron="either", names=PET_NAMES,
        adjs=("big", "gray", "young", "little"),
        looks=("with big flappy ears", "with a long trunk"),
        moves=("ran", "stomped"), walks=("walked", "stomped"),
        happy=("trumpeted happily", "swung {his} trunk"),
        sad=("let {his} big ears droop", "sighed a big sigh"),
        homes=("a sunny place by a wide river", "a big house at the edge of the jungle"),
        hobbies=("spray water with {his} trunk", "paint with {his} trunk",
                 "splash in the river"),
        limbs="trunk", tags=("big", "strong", "swim")),
    "hedgehog": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "small", "brown", "tiny"),
        looks=("with soft prickles", "with a pointy little nose"),
        moves=("scurried", "trotted"), walks=("shuffled", "trotted"),
        happy=("snuffled happily", "did a little spin"),
        sad=("curled up into a prickly ball", "sniffed sadly"),
        homes=("a pile of leaves under a hedge", "a cozy nest in the garden"),
        hobbies=("look for beetles", "roll down hills", "sleep in the leaves"),
        limbs="paws", tags=("small",)),
    "monkey": dict(
        pron="either", names=PET_NAMES,
        adjs=("little", "brown", "young", "small"),
        looks=("with a long curly tail", "with a cheeky grin"),
        moves=("swung", "ran", "scampered"), walks=("walked", "skipped"),
        happy=("clapped {his} hands", "did a happy flip"),
        sad=("sat very still", "hugged {his} knees"),
        homes=("a tall tree in the jungle", "a tree house by the river"),
        hobbies=("swing from the trees", "tell jokes", "eat bananas"),
        limbs="hands", tags=("climb",)),
    # Grown-ups (moms, dads, grandparents) are never drawn as heroes.
    "grown-up": dict(
        pron="either", names=(), adjs=("kind",), looks=(),
        moves=("hurried", "rushed"), walks=("walked",),
        happy=("smiled", "laughed"), sad=("sighed",), homes=("a house",),
        hobbies=("read",), limbs="hands", tags=("grown-up",)),
}

# Kinds a hero or friend can be, with weights (children are a bit more common).
HERO_KINDS = (["girl"] * 5 + ["boy"] * 5 + [
    "cat", "dog", "rabbit", "bear", "bird", "fox", "duck", "mouse", "dragon",
    "robot", "owl", "frog", "squirrel", "turtle", "pig", "lamb", "elephant",
    "hedgehog", "monkey", "cat", "dog", "rabbit", "bear", "fox", "mouse"])

# Character traits, each with sentences that show it.
TRAITS = {
    "kind": ("{hero.He} always had a nice word for everyone.",
             "{hero.He} liked to help everyone {hero.he} met."),
    "brave": ("{hero.He} was not afraid of much.",
              "{hero.He} liked to try new things."),
    "shy": ("{hero.He} did not talk much, and {hero.he} blushed when someone new said hello.",
            "{hero.He} often hid behind {hero.his} {parent_word} when someone new came by."),
    "curious": ("{hero.He} always wanted to know how things worked.",
                "{hero.He} asked lots and lots of questions."),
    "clever": ("{hero.He} was very good at solving problems.",
               "{hero.He} always had good ideas."),
    "cheerful": ("{hero.He} smiled almost all the time.",
                 "{hero.He} hummed little songs wherever {hero.he} went."),
    "gentle": ("{hero.He} was gentle with everyone, even the smallest bugs.",
               "{hero.He} always spoke in a soft voice."),
    "playful": ("{hero.He} loved games more than anything.",
                "{hero.He} could play all day long."),
    "silly": ("{hero.He} liked to make funny faces to make {hero.his} friends laugh.",
              "{hero.He} told the funniest jokes in town."),
    "careful": ("{hero.He} always looked twice before {hero.he} did anything.",
                "{hero.He} kept all {hero.his} things neat and tidy."),
    "friendly": ("{hero.He} said hello to everyone {hero.he} met.",
                 "{hero.He} had lots of friends."),
    "honest": ("{hero.He} always tried to tell the truth.",),
    "busy": ("{hero.He} was always running from one thing to the next.",
             "{hero.He} never sat still for long."),
    "grumpy": ("{hero.He} was often a little grumpy in the morning.",
               "{hero.He} did not always like to share."),
    "dreamy": ("{hero.He} liked to look at the clouds and dream.",
               "{hero.He} often made up stories in {hero.his} head."),
}
TRAIT_NAMES = tuple(TRAITS)

# Where stories happen. "at" is the phrase for being there, "spots" are places
# where something can hide, "acts" are things to do (infinitives), "sights"
# are things to see.
PLACES = {
    "park": dict(
        the="the park", at="in the park",
        sights=("children playing on the swings", "a big fountain",
                "ducks swimming in the pond", "people walking their dogs"),
        spots=("under the slide", "behind a bench", "in the sandbox",
               "near the fountain", "under a pile of leaves"),
        acts=("play on the swings", "go down the slide", "play catch",
              "run around the fountain")),
    "forest": dict(
        the="the forest", at="in the forest",
        sights=("tall trees", "tiny mushrooms", "a little stream",
                "a family of deer"),
        spots=("under a big mushroom", "behind an old log",
               "inside a hollow tree", "under a pile of leaves",
               "near the little stream"),
        acts=("look for pinecones", "explore the paths",
              "play hide and seek among the trees")),
    "garden": dict(
        the="the garden", at="in the garden",
        sights=("bright flowers", "busy bees", "red tomatoes",
                "a little green frog"),
        spots=("under a big leaf", "behind the flower pots",
               "next to the carrots", "inside the watering can"),
        acts=("smell the flowers", "water the plants", "look for ladybugs")),
    "beach": dict(
        the="the beach", at="at the beach",
        sights=("big blue waves", "white seagulls", "pretty shells",
                "a tall lighthouse"),
        spots=("under the sand", "behind a big rock", "near the water",
               "next to a sand castle"),
        acts=("build a sand castle", "look for shells", "splash in the waves")),
    "farm": dict(
        the="the farm", at="on the farm",
        sights=("cows eating grass", "a big red barn", "chickens pecking at seeds",
                "a tractor"),
        spots=("in the hay", "behind the big red barn",
               "next to the chicken coop", "by the fence"),
        acts=("feed the chickens", "jump in the hay", "visit the cows")),
    "meadow": dict(
        the="the meadow", at="in the meadow",
        sights=("yellow flowers", "butterflies", "tall green grass",
                "a little brown bunny"),
        spots=("in the tall grass", "under a bush", "behind a big rock",
               "next to a patch of daisies"),
        acts=("chase butterflies", "pick flowers", "roll down the grassy hill")),
    "pond": dict(
        the="the pond", at="by the pond",
        sights=("frogs on lily pads", "little fish in the water",
                "dragonflies", "an old willow tree"),
        spots=("under a lily pad", "in the reeds", "on a flat rock",
               "behind the old willow tree"),
        acts=("skip stones", "watch the frogs", "count the fish")),
    "hill": dict(
        the="the big hill", at="on the big hill",
        sights=("the whole town below", "fluffy white clouds",
                "a windmill far away"),
        spots=("behind a big rock", "in a thorny bush", "under a tree",
               "in the long grass"),
        acts=("fly kites", "roll down the hill", "look at the clouds")),
}
OUTDOOR_PLACES = tuple(PLACES)

# Things that can be lost, found, shared or given. (noun, adjectives, plural?)
TOYS = (
    ("ball", ("red", "blue", "bouncy", "striped", "shiny", "yellow", "orange")),
    ("kite", ("red", "blue", "colorful", "big", "orange")),
    ("teddy bear", ("soft", "old", "brown", "fluffy")),
    ("toy boat", ("little", "wooden", "red", "blue")),
    ("toy car", ("little", "red", "fast", "green")),
    ("picture book", ("big", "old", "new", "colorful")),
    ("doll", ("rag", "little", "old")),
    ("marbles", ("shiny", "colorful", "glass", "blue")),
    ("crayons", ("colorful", "new", "bright")),
    ("yo-yo", ("red", "blue", "shiny")),
    ("whistle", ("silver", "little", "shiny")),
    ("drum", ("little", "red", "shiny")),
)
WEARABLES = (
    ("hat", ("blue", "straw", "woolly", "big", "red", "orange")),
    ("scarf", ("striped", "warm", "red", "long", "orange")),
    ("mittens", ("warm", "red", "woolly", "green")),
    ("boots", ("green", "yellow", "red", "shiny")),
)
TREASURES = (
    ("necklace", ("shiny", "blue", "beaded")),
    ("key", ("old", "golden", "little", "silver")),
    ("shell", ("pink", "pretty", "shiny", "white")),
    ("stone", ("smooth", "lucky", "shiny", "round")),
    ("bell", ("little", "silver", "golden")),
)
TREATS = (
    ("cookies", ("warm", "chocolate", "oatmeal", "sugar")),
    ("apple", ("big", "shiny", "juicy", "red")),
    ("pear", ("juicy", "ripe", "big")),
    ("strawberries", ("sweet", "red", "juicy")),
    ("cherries", ("sweet", "dark", "red")),
    ("muffin", ("blueberry", "warm", "honey")),
    ("pie", ("apple", "cherry", "little")),
    ("grapes", ("green", "purple", "sweet")),
    ("cupcake", ("pink", "chocolate", "little")),
)
PLURAL_NOUNS = frozenset(("marbles", "crayons", "mittens", "boots", "cookies",
                          "strawberries", "cherries", "grapes"))
# Objects that can blow away or get stuck up high, and small ones that fit in a pocket.
HIGH_NOUNS = frozenset(("ball", "kite", "hat", "scarf", "balloon"))
SMALL_NOUNS = frozenset(("marbles", "whistle", "yo-yo", "necklace", "key",
                         "shell", "stone", "bell", "toy car"))

# Little things found while searching, and creatures that borrow lost things.
JUNK = ("an old leaf", "a sleepy snail", "a shiny pebble", "a little beetle",
        "a pinecone", "an empty snail shell", "a lost button", "a long feather")
BORROWERS = (("a playful puppy", "the puppy"), ("a cheeky squirrel", "the squirrel"),
             ("a curious crow", "the crow"), ("a baby goat", "the little goat"),
             ("a little kitten", "the kitten"))

# Weather words, the seasons they fit, and a sentence that paints them.
WEATHER = {
    "sunny": (("spring", "summer", "autumn"),
              ("The sun was shining and the sky was blue.",
               "The sun was warm and bright.")),
    "warm": (("spring", "summer"),
             ("The air was warm, and birds were singing in the trees.",
              "It was warm, and the flowers were in bloom.")),
    "windy": (("spring", "autumn"),
              ("The wind was blowing through the trees.",
               "A strong wind made the leaves dance.")),
    "bright": (("spring", "summer", "autumn"),
               ("There was not a single cloud in the sky.",
                "Everything sparkled in the sunlight.")),
    "cloudy": (("spring", "autumn"),
               ("Big gray clouds covered the sky.",
                "The sky was gray, and the air smelled like rain.")),
    "snowy": (("winter",),
              ("Soft white snow covered the ground.",
               "Snowflakes were falling from the sky.")),
    "cold": (("winter", "autumn"),
             ("The air was cold and crisp.",
              "It was so cold that {hero}'s breath made little clouds.")),
}
NICE_WEATHER = ("sunny", "warm", "bright", "sunny", "windy")

AREAS = ("a little village by the sea", "a quiet valley between two hills",
         "a busy little town", "a green land full of flowers",
         "a village at the edge of a big forest", "a sunny place near a wide river")

# The grown-up who looks after the hero: (narration word, name used in speech, pronoun).
PARENTS = (("mom", "Mom", "she"), ("dad", "Dad", "he"), ("mom", "Mom", "she"),
           ("dad", "Dad", "he"), ("grandma", "Grandma", "she"),
           ("grandpa", "Grandpa", "he"))
ROBOT_KEEPERS = (("Grandpa Gus", "he"), ("Grandma Pim", "she"))

# Lessons usable at the end of any story, after the plot's own.
CLOSERS = (
    "And that was a very good day.",
    "It was the best day ever.",
    "{hero} smiled all the way home.",
    "That night, {hero} fell asleep with a happy smile.",
    "{hero} would never forget that day.",
)

# =============================================================================
# 2. Small grammar helpers
# =============================================================================


def article(phrase: str) -> str:
    """Return "a" or "an" for the phrase that follows it."""
    word = phrase.split(" ", 1)[0].lower()
    if word.startswith(("uni", "use", "eu", "one")):
        return "a"          # a unicorn, a useful thing
    if word.startswith(("hour", "honest", "honor")):
        return "an"         # an hour, an honest girl
    return "an" if word[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return article(phrase) + " " + phrase


def cap(text: str) -> str:
    """Capitalise the first letter (after an opening quote if there is one)."""
    if text.startswith('"'):
        return '"' + text[1:2].upper() + text[2:]
    return text[:1].upper() + text[1:]


# Lower-case letters that begin a sentence: at the start of a paragraph, after
# . ! ? and a space, or right after an opening quote.
_SENTENCE_START = re.compile(r'(^"?|[.!?] "?|, ")([a-z])')


def fix_capitals(paragraph: str) -> str:
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), paragraph)


def split_first_sentence(words: str):
    """Split 'I lost it. Can you help?' into ('I lost it.', 'Can you help?')."""
    for i, ch in enumerate(words[:-1]):
        if ch in ".!?" and words[i + 1] == " ":
            return words[:i + 1], words[i + 2:]
    return words, ""


class Thing:
    """An object in a story, with words that agree with it in number.

    ``{obj.a}`` a red ball / some red boots      ``{obj.the}`` the ball / the boots
    ``{obj.They}`` It / They   ``{obj.them}`` it / them   ``{obj.was}`` was / were
    ``{obj.is}`` is / are      ``{obj.s}`` "s" / "" (for "look{obj.s}")
    ``{obj.that}`` that / those   ``{obj.thing}`` thing / things
    """

    def __init__(self, noun: str, adj: str):
        self.noun = noun
        self.adj = adj
        self.plural = noun in PLURAL_NOUNS
        self.desc = adj + " " + noun
        self.a = ("some " if self.plural else article(self.desc) + " ") + self.desc
        self.the = "the " + noun
        self.high = noun in HIGH_NOUNS
        self.small = noun in SMALL_NOUNS
        if self.plural:
            self.they, self.them, self.was, self.s = "they", "them", "were", ""
            self.that, self.thing = "those", "things"
            self.there = "There they are"
            setattr(self, "is", "are")
        else:
            self.they, self.them, self.was, self.s = "it", "it", "was", "s"
            self.that, self.thing = "that", "thing"
            self.there = "There it is"
            setattr(self, "is", "is")
        self.They = cap(self.they)

    def __format__(self, spec):
        return self.noun


class Character:
    """A person or animal in a story.

    ``{hero}`` prints the name. ``{hero.he} {hero.He} {hero.him} {hero.his}
    {hero.His} {hero.himself}`` follow the pronoun. ``{hero.a_desc}`` is
    "a little cat", ``{hero.kind}`` is "cat", ``{hero.a_trait}`` is "a kind"
    or "an honest". The properties ``moved``,
    ``walked``, ``happy`` and ``sad`` draw a fresh kind-flavoured phrase each
    time they are used ("hopped", "wagged her tail", ...).
    """

    def __init__(self, rng, name, kind, pron=None, adj=None, trait=None):
        info = KINDS[kind]
        self._rng = rng
        self.info = info
        self.name = name
        self.kind = kind
        pron = pron or info["pron"]
        if pron == "either":
            pron = rng.choice(("he", "she"))
        self.pron = pron
        self.he, self.him, self.his, self.himself = PRONOUNS[pron]
        self.He, self.His = cap(self.he), cap(self.his)
        self.adj = adj or rng.choice(info["adjs"])
        self.desc = self.adj + " " + kind
        self.a_desc = with_article(self.desc)
        self.trait = trait or rng.choice(TRAIT_NAMES)
        self.a_trait = with_article(self.trait)
        self.limbs = info["limbs"]
        self.looks = self._fill(rng.choice(info["looks"])) if info["looks"] else ""
        self.home = rng.choice(info["homes"])
        self.hobby = self._fill(rng.choice(info["hobbies"]))

    def _fill(self, text):
        return text.format(he=self.he, him=self.him, his=self.his,
                           himself=self.himself)

    def can(self, tag):
        return tag in self.info["tags"]

    @property
    def moved(self):
        return self._fill(self._rng.choice(self.info["moves"]))

    @property
    def walked(self):
        return self._rng.choice(self.info["walks"])

    @property
    def happy(self):
        return self._fill(self._rng.choice(self.info["happy"]))

    @property
    def sad(self):
        return self._fill(self._rng.choice(self.info["sad"]))

    def __format__(self, spec):
        return self.name

    def __str__(self):
        return self.name


# =============================================================================
# 3. The story under construction and its sentence builders
# =============================================================================

SPEECH_VERBS = {".": ("said", "said", "said", "said"),
                "?": ("asked", "asked", "asked"),
                "!": ("shouted", "cried", "said", "called")}
# Verbs that can tag a question; any other verb asked for is turned into "asked".
QUESTION_VERBS = ("asked", "wondered", "whispered", "called", "sighed", "cried")


class Story:
    """Collects sentences into paragraphs and keeps the story's context."""

    def __init__(self, rng):
        self.rng = rng
        self.paras = [[]]
        self.ctx = {}
        self.cast = []               # characters in order of appearance
        self.used_names = set()      # membership tests only (no iteration)
        self.known = set()           # names the reader has been told about
        self.last_speaker = None
        self.spoke_last = False      # was the last sentence a line of dialogue?
        self.day_set = False         # has the opening already set the day?
        self.time = None             # morning / afternoon / night
        self.weather = "sunny"
        self.season = "summer"

    # --- randomness -------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def chance(self, p):
        return self.rng.random() < p

    # --- characters and things --------------------------------------------
    def new_character(self, role, kinds=HERO_KINDS, kind=None, **kw):
        kind = kind or self.pick(kinds)
        pool = KINDS[kind]["names"]
        name = self.pick(pool)
        while name in self.used_names:
            name = self.pick(pool)
        self.used_names.add(name)
        who = Character(self.rng, name, kind, **kw)
        self.ctx[role] = who
        self.cast.append(who)
        return who

    def new_parent(self, hero):
        """The grown-up at home: "her mom" in the story, "Mom" when spoken to.

        ``{parent_word}`` is the bare word ("mom"), for "his mom's room".
        Robots are looked after by the inventor who built them.
        """
        if hero.kind == "robot":
            name, pron = self.pick(ROBOT_KEEPERS)
            who = Character(self.rng, name, "grown-up", pron=pron)
            who.address, word = name, "keeper"
        else:
            word, address, pron = self.pick(PARENTS)
            who = Character(self.rng, hero.his + " " + word, "grown-up", pron=pron)
            who.address = address
        self.ctx["parent"] = who
        self.ctx["parent_word"] = word
        return who

    def meet(self, who):
        """Put a character on stage (used for pronoun clarity in speech tags)."""
        if who not in self.cast:
            self.cast.append(who)

    def new_thing(self, role, table):
        noun, adjs = self.pick(table)
        thing = Thing(noun, self.pick(adjs))
        self.ctx[role] = thing
        return thing

    # --- sentences ----------------------------------------------------------
    def fmt(self, template, **extra):
        if extra:
            return template.format(**dict(self.ctx, **extra))
        return template.format(**self.ctx)

    def add(self, templates, **extra):
        """Add one sentence (or a few): a template or a random one of a list."""
        if not isinstance(templates, str):
            templates = self.pick(templates)
        self.paras[-1].append(cap(self.fmt(templates, **extra)))
        self.spoke_last = False

    def maybe(self, p, templates, **extra):
        if self.chance(p):
            self.add(templates, **extra)

    def para(self):
        if self.paras[-1]:
            self.paras.append([])

    def say(self, who, lines, verb=None, **extra):
        """Add a line of dialogue with a speech tag in one of several shapes."""
        if not isinstance(lines, str):
            lines = self.pick(lines)
        words = cap(self.fmt(lines, **extra))
        first, rest = split_first_sentence(words)
        r = self.rng.random()
        shape = "split" if rest and r < 0.3 else "after" if r < 0.7 else "before"
        # The verb must fit the sentence it tags: the first one in a split quote.
        end = first[-1] if shape == "split" else words[-1]
        if verb is None:
            verb = SPEECH_VERBS[end]
        if not isinstance(verb, str):
            verb = self.pick(verb)
        if end == "?" and verb not in QUESTION_VERBS:
            verb = "asked"
        elif end != "?" and verb in ("asked", "wondered"):
            verb = "said"
        self.meet(who)
        # "she said" only when it is clear who "she" is: nobody else on stage
        # shares the pronoun, or she also spoke the sentence just before.
        same_pron = sum(1 for c in self.cast if c.pron == who.pron)
        just_spoke = who is self.last_speaker and self.spoke_last
        if (same_pron == 1 or just_spoke) and self.chance(0.45):
            tag = who.he + " " + verb                 # she said
        elif shape != "before" and self.chance(0.5):
            tag = verb + " " + who.name               # said Lily
        else:
            tag = who.name + " " + verb               # Lily said
        self.last_speaker = who
        self.spoke_last = True
        if shape == "split":      # "I lost it," said Lily. "Can you help?"
            head = first[:-1] + "," if first.endswith(".") else first
            text = '"%s" %s. "%s"' % (head, tag, rest)
        elif shape == "after":    # "I lost it," said Lily.
            head = words[:-1] + "," if words.endswith(".") else words
            text = '"%s" %s.' % (head, tag)
        else:                     # Lily said, "I lost it."
            text = '%s, "%s"' % (cap(tag), words)
        self.paras[-1].append(text)

    def first(self, who):
        """Name a character, adding who they are the first time."""
        if who.name in self.known:
            return who.name
        self.known.add(who.name)
        self.meet(who)
        his = self.ctx["hero"].his
        if who.can("person"):
            return his + " friend " + who.name
        return self.pick((who.name + " the " + who.kind,
                          his + " friend " + who.name + " the " + who.kind))

    # --- time and weather ------------------------------------------------------
    def set_weather(self, choices):
        self.weather = self.pick(choices)
        self.season = self.pick(WEATHER[self.weather][0])

    def when(self, time="day"):
        """A phrase that starts the main events: 'One sunny morning, ' or ''.

        ``time`` is morning, afternoon, day or night. If the opening already
        placed us on a particular day, a short link is used instead.
        """
        w, season = self.weather, self.season
        if self.day_set:
            if time == "night":
                return "That night, "
            options = ["", "", "That day, "]
            if self.time == "morning":
                options += ["After breakfast, ", "That morning, "]
            return self.pick(options)
        self.day_set = True
        self.time = time
        if time == "night":
            return self.pick(("One night, ", "Late one night, ", "One dark night, "))
        if time == "day":
            time = self.pick(("morning", "afternoon", "day"))
            self.time = time
        options = ["One day, ", "One %s %s, " % (w, time),
                   "On a %s %s %s, " % (w, season, time),
                   "One %s %s, " % (season, time)]
        if time == "morning":
            options.append("Early one morning, ")
        return self.pick(options)

    def weather_line(self, p=1.0):
        self.maybe(p, WEATHER[self.weather][1])

    # --- output ---------------------------------------------------------------
    def text(self):
        return "\n".join(fix_capitals(" ".join(p)) for p in self.paras if p)


# =============================================================================
# 4. Openings: how the hero is introduced
# =============================================================================

def tell_opening(s):
    """Introduce the hero; return a short name for the kind of opening."""
    hero = s.ctx["hero"]
    r = s.rng.random()
    who = hero.a_desc + " named " + hero.name
    if hero.looks and s.chance(0.25):
        who = hero.a_desc + " " + hero.looks + " named " + hero.name
    if r < 0.40:
        kind = "once upon a time"
        s.add(["Once upon a time, there was " + who + ".",
               "Once upon a time, there lived " + who + ".",
               "Once upon a time, in " + s.pick(AREAS) + ", there lived " + who + ".",
               "Once upon a time, " + who + " lived in {hero.home}."])
    elif r < 0.48:
        kind = "one day"
        s.day_set = True
        s.time = "day"
        s.add("One day, " + who + " " + s.pick(("woke up early", "woke up and stretched",
                                                   "looked out of the window")) + ".")
    elif r < 0.55:
        kind = "one weather morning"
        s.day_set = True
        s.time = "morning"
        s.add("One {w} morning, {hero.a_desc} named {hero} {act}.",
              w=s.weather, act=s.pick(("woke up with a smile", "jumped out of bed",
                                       "opened {hero.his} eyes and yawned")).format(hero=hero))
    elif r < 0.61:
        kind = "there was once"
        s.add(["There was once " + who + ".",
               "There was once " + who + " who lived in {hero.home}."])
    elif r < 0.67:
        kind = "long ago"
        s.add(["Long ago, in " + s.pick(AREAS) + ", there lived " + who + ".",
               "Long, long ago, there lived " + who + "."])
    elif r < 0.72:
        kind = "in a small town"
        s.add(["In a small town, there lived " + who + ".",
               "In a small town by the sea, there lived " + who + "."])
    elif r < 0.79:
        kind = "name first"
        s.add(["{hero} was {hero.a_desc} who lived in {hero.home}.",
               "{hero} was {hero.a_desc} " + (hero.looks or "with a big smile") + "."])
    elif r < 0.83:
        kind = "deep in the forest"
        s.add("Deep in the forest, there lived " + who + ".")
    elif r < 0.87:
        kind = "have you ever"
        s.add("Have you ever met " + who + "? {hero.He} lived in {hero.home}.")
    elif r < 0.91:
        kind = "it was a day"
        s.day_set = True
        s.time = "day"
        s.add("It was a {w} {season} day. {hero} the {hero.kind} looked out of the "
              "window and smiled.",
              w=s.weather, season=s.season)
    elif r < 0.95:
        kind = "far away"
        s.add("Far away, on the other side of the hills, there lived " + who + ".")
    else:
        kind = "not long ago"
        s.add("Not long ago, in " + s.pick(AREAS) + ", there lived " + who + ".")

    # One to three sentences about the hero.
    if s.chance(0.5):
        s.add(["{hero.He} was {hero.a_trait} {hero.kind}.",
               "Everyone knew that {hero} was very {hero.trait}."])
        s.maybe(0.3, TRAITS[hero.trait])
    else:
        s.maybe(0.7, TRAITS[hero.trait])
    s.maybe(0.5, ["{hero.He} loved to {hero.hobby}.",
                  "More than anything, {hero.he} liked to {hero.hobby}.",
                  "Every day, {hero.he} liked to {hero.hobby}."])
    if " lived" not in s.paras[0][0]:
        s.maybe(0.4, "{hero.He} lived in {hero.home} with {parent}.")
    return kind


def intro_friend(s, p=1.0):
    """Mention the hero's friend early, as plots that need one do."""
    friend = s.ctx["friend"]
    s.meet(friend)
    if not s.chance(p):
        return
    s.known.add(friend.name)
    s.add(["{hero.His} best friend was {friend.a_desc} named {friend}.",
           "{hero} had a best friend, {friend.a_desc} named {friend}.",
           "{hero.His} best friend, {friend} the {friend.kind}, lived nearby."
           if not friend.can("person") else
           "{hero.His} best friend, {friend}, lived nearby."])


def ending(s, lessons, p_closer=0.4):
    """A lesson from the plot, sometimes a closing line, rarely 'The end.'"""
    s.add(lessons)
    s.maybe(p_closer, CLOSERS)
    s.maybe(0.04, "The end.")


# =============================================================================
# 5. Plot skeletons
# =============================================================================
# Each plot tells the story after the opening, step by step, choosing among
# several sentences at every step. s.ctx holds "hero", "friend", "parent" and
# the plot's own things.


def plot_lost_object(s):
    hero, friend = s.ctx["hero"], s.ctx["friend"]
    obj = s.new_thing("obj", TOYS + WEARABLES + TREASURES)
    place = s.ctx["place"] = PLACES[s.pick(OUTDOOR_PLACES)]
    s.ctx["pthe"], s.ctx["pat"] = place["the"], place["at"]
    s.add(["{hero.His} favorite {obj.thing} in the whole world {obj.was} {hero.his} {obj.desc}.",
           "{hero} had {obj.a} that {hero.he} loved very much.",
           "{hero} had {obj.a}. {hero.He} took {obj.them} everywhere {hero.he} went."])
    s.maybe(0.4, "{obj.They} had been a present from {hero.his} grandma.")
    s.para()
    s.add("{when}{hero} took {hero.his} {obj} to {pthe}.", when=s.when())
    s.weather_line(0.4)
    s.add(["{hero.He} wanted to {act}.", "There, {hero.he} decided to {act}."],
          act=s.pick(place["acts"]))
    s.maybe(0.5, "{hero.He} saw {sight}.", sight=s.pick(place["sights"]))
    s.add(["{hero.He} put {obj.the} down for just a moment.",
           "{hero.He} played for a long time and forgot all about {obj.the}."])
    s.add(["When it was time to go home, {obj.the} {obj.was} gone!",
           "Later, {hero} looked around. {hero.His} {obj} {obj.was} not there!",
           "But when {hero.he} looked again, {obj.the} {obj.was} gone!"])
    s.say(hero, ["Oh no! Where {obj.is} my {obj}?", "Oh no! My {obj}!",
                 "Where did my {obj} go?"], verb=("cried", "gasped", "said"))
    s.add(["{hero} {hero.sad}.", "{hero} felt very sad.",
           "{hero} felt a big lump in {hero.his} throat."])
    s.para()
    if s.chance(0.5):
        s.add("Just then, {friend.a_desc} named {friend} {friend.moved} over.")
        s.known.add(friend.name)
    else:
        s.add("Just then, {fr} came by.", fr=s.first(friend))
    s.say(friend, ["What's wrong, {hero}?", "Why do you look so sad, {hero}?",
                   "{hero}, what happened?"])
    s.say(hero, ["I lost my {obj}. I looked everywhere, but I can't find {obj.them}.",
                 "My {obj} {obj.is} gone, and I can't find {obj.them} anywhere."])
    s.say(friend, ["Don't worry. I will help you look!",
                   "Let's look for {obj.them} together.",
                   "Two friends can find anything. Let's go!"])
    spots = s.rng.sample(place["spots"], 3)
    s.add(["First, they looked {spot}, but {obj.the} {obj.was} not there.",
           "They looked {spot}. There was only {junk}."],
          spot=spots[0], junk=s.pick(JUNK))
    if friend.can("fly"):
        s.add("{friend} flew high up into the air to look from above.")
    elif friend.can("smell"):
        s.add("{friend} sniffed the ground with {friend.his} nose.")
    else:
        s.add("Then they looked {spot}, but they found only {junk}.",
              spot=spots[1], junk=s.pick(JUNK))
    s.para()
    found = s.pick(("spot", "borrower", "high" if obj.high else "spot",
                    "pocket" if obj.small and hero.can("person") else "borrower"))
    if found == "spot":
        s.say(friend, "Look! {obj.there}!", verb=("shouted", "cried"))
        s.add("{obj.They} {obj.was} {spot}, just where {hero} had put {obj.them} down.",
              spot=spots[2])
    elif found == "borrower":
        a, the = s.pick(BORROWERS)
        s.add("Then they heard a little noise {spot}. It was {a}, and it was "
              "playing with {obj.the}!",
              spot=spots[2], a=a)
        s.say(hero, ["That's my {obj}. May I have {obj.them} back, please?",
                     "Excuse me, {obj.that} {obj.is} mine."], verb="said")
        s.add("{the} looked up and gave {obj.the} back to {hero}.", the=the)
    elif found == "high":
        s.add("Then {friend} looked up. The {obj} {obj.was} stuck high in a tree!")
        if hero.can("fly") or hero.can("climb"):
            verb = "flew" if hero.can("fly") else "climbed"
            s.add("{hero} " + verb + " up and got {obj.them} down.")
        elif friend.can("fly") or friend.can("climb"):
            verb = "flew" if friend.can("fly") else "climbed"
            s.add("{friend} " + verb + " up the tree and brought {obj.them} down.")
        else:
            s.add("They shook the tree together until {obj.the} fell down.")
    else:
        s.add("Then {hero} felt something in {hero.his} pocket. It was {hero.his} {obj}! "
              "{obj.They} had been there all along.")
        s.add("{hero} and {friend} laughed and laughed.")
    s.add(["{hero} hugged {friend}.", "{hero} {hero.happy}.",
           "{hero} was so happy to have {hero.his} {obj} back."])
    s.say(hero, ["Thank you, {friend}! You are a good friend.",
                 "Thank you for helping me, {friend}!"])
    if s.chance(0.5):
        s.say(friend, ["That's what friends are for.", "I'm glad I could help."])
    ending(s, ["From that day on, {hero} always kept {hero.his} {obj} close.",
               "After that, {hero} was much more careful with {hero.his} things.",
               "{hero} learned that good friends help each other, and to look after "
               "the things {hero.he} loved."])


def plot_sharing(s):
    hero, friend, parent = s.ctx["hero"], s.ctx["friend"], s.ctx["parent"]
    intro_friend(s)
    food = "machine" not in hero.info["tags"] and "machine" not in friend.info["tags"]
    item = s.new_thing("item", TREATS if food else TOYS)
    s.ctx["use"], s.ctx["used"] = ("eat", "ate") if food else ("play with", "played with")
    s.para()
    if food:
        s.add(["{when}{parent} gave {hero} {item.a}.",
               "{when}{parent} baked {item.a} for {hero}." if item.noun in
               ("cookies", "muffin", "pie", "cupcake") else
               "{when}{parent} brought home {item.a} for {hero}."], when=s.when())
        s.add(["{item.They} looked delicious.", "{item.They} smelled so good!"])
    else:
        s.add(["{when}{parent} gave {hero} {item.a}.",
               "{when}{hero} got {item.a} as a present."], when=s.when())
        s.add(["{item.They} {item.was} the best thing {hero} had ever seen.",
               "{item.They} {item.was} brand new."])
    s.say(hero, ["Yummy! This is all for me!" if food else "This is all mine!",
                 "I will {use} {item.them} all by myself!"], verb=("said", "sang"))
    s.para()
    s.add(["Just then, {friend} came by.", "Soon, {friend} {friend.moved} over."])
    s.add(["{friend} looked at {item.the} with big eyes.",
           "{friend} saw {item.the} and stopped."])
    s.say(friend, ["Wow, {item.they} look{item.s} so good. Can I have some?" if food else
                   "Wow! Can I play too?",
                   "Can I {use} {item.them} with you, {hero}?"], verb="asked")
    s.add(["{hero} held {item.the} close.", "{hero} turned away."])
    s.say(hero, ["No. {item.They} {item.is} mine!", "No! Get your own."],
          verb=("said", "snapped"))
    s.add(["{friend} {friend.sad}. Then {friend.he} walked away slowly.",
           "{friend} looked down and did not say anything. Then {friend.he} walked away."])
    s.para()
    s.add(["{hero} sat down to {use} {item.them} alone. But somehow, it was not much fun.",
           "{hero} began to {use} {item.the}, but {hero.he} did not feel happy at all."])
    s.add(["{hero.He} kept thinking about {friend}'s sad face.",
           "{hero.He} remembered how {friend} had shared {friend.his} toys with "
           "{hero.him} last week.",
           "{hero.He} thought about what {parent} always said: sharing makes things better."])
    s.add(["So {hero} jumped up and {hero.moved} after {friend}.",
           "{hero} got up and went to find {friend}."])
    s.say(hero, ["{friend}, wait! I'm sorry. Let's share!",
                 "I'm sorry, {friend}. Do you want to share with me?"], verb=("called", "said"))
    if food and item.plural:
        s.add("{hero} gave half of {item.the} to {friend}.")
    elif food:
        s.add("{hero} broke {item.the} into two pieces and gave the bigger piece to {friend}.")
    else:
        s.add("{hero} let {friend} have the first turn.")
    s.say(friend, ["Thank you, {hero}! You are a good friend.", "Really? Thank you!"],
          verb=("said", "cried"))
    if food:
        s.add(["They sat under a tree and ate together.",
               "They sat side by side and shared every bite."])
        s.add(["It all tasted even better than before.",
               "Somehow, every bite tasted better when they shared it.",
               "It was the best snack {hero} had ever had."])
    else:
        s.add(["They took turns and played together all afternoon.",
               "They played together until the sun went down."])
        s.add("It was much more fun with two.")
    if s.chance(0.35):
        other = s.new_character("other")
        s.add("Soon {other.a_desc} named {other} came by, and they shared with {other.him} too.")
    ending(s, ["{hero} learned that sharing makes everyone happy.",
               "That day, {hero} learned that a treat is sweeter when you share it." if food else
               "That day, {hero} learned that toys are more fun when you share them.",
               "From then on, {hero} always shared with {hero.his} friends."])


# Problems a friend can have, for plot_helping_friend.
def _help_kite(s, hero, friend):
    s.add(["{friend} was flying {friend.his} kite. Suddenly, a big gust of wind "
           "blew the kite into a tall tree.",
           "{friend}'s kite was dancing in the sky. Then the wind pulled it down, "
           "right into the top of a tall tree."])
    s.add(["The kite was stuck in the branches!", "The string was tangled around a branch."])
    s.say(friend, ["Oh no! My kite is stuck, and I can't reach it.",
                   "My kite! It's stuck up there!"], verb=("cried", "said"))
    if hero.can("fly"):
        s.add("{hero} flapped {hero.his} wings and flew up into the tree. "
              "{hero.He} pulled the kite free with {hero.his} {hero.limbs}.")
    elif hero.can("climb"):
        s.add(["{hero} climbed up the tree, one branch at a time. "
               "At the top, {hero.he} pulled the kite free.",
               "{hero} held on tight and climbed higher and higher until {hero.he} "
               "could reach the kite."])
    elif hero.can("big") or hero.can("strong"):
        s.add("{hero} stood up tall and reached as high as {hero.he} could. "
              "{hero.He} gently pulled the kite down.")
    else:
        s.add(["{hero} found a long stick. {hero.He} poked the branches very gently "
               "until the kite floated down.",
               "{hero} had an idea. {hero.He} gently shook the tree, and the kite "
               "came floating down."])
    s.add(["The kite was safe, and only a little bit torn.",
           "Soon the kite was flying high in the sky again."])


def _help_mud(s, hero, friend):
    s.add(["{friend} was stuck in a patch of thick, sticky mud. "
           "The more {friend.he} wiggled, the deeper {friend.he} sank.",
           "{friend} had stepped into a deep puddle of mud, and now {friend.he} could not "
           "get out."])
    s.say(friend, ["Help! I'm stuck!", "Help me, please! I can't get out!"],
          verb=("shouted", "cried"))
    if hero.can("big") or hero.can("strong"):
        s.add("{hero} reached out and lifted {friend} right out of the mud.")
        s.add("{friend} was covered in mud from head to toe. {hero} laughed, and "
              "soon {friend} was laughing too.")
    else:
        s.add("{hero} found a long branch and held it out. {friend} held on tight, "
              "and {hero} pulled as hard as {hero.he} could.")
        s.add("With a loud POP, {friend} came out of the mud! They both fell back into "
              "the grass and laughed. They were covered in mud from head to toe.")


def _help_basket(s, hero, friend):
    s.add(["{friend} was trying to carry a big basket of apples home. "
           "The basket was very heavy, and {friend} had to stop every few steps.",
           "{friend} had picked so many apples that {friend.he} could hardly lift the basket."])
    s.say(friend, ["This basket is so heavy. I don't think I can carry it home.",
                   "Oof! These apples are too heavy for me."], verb=("said", "sighed"))
    if hero.can("big") or hero.can("strong"):
        s.add("{hero} picked up the basket as if it were a feather.")
    else:
        s.add(["{hero} took one handle, and {friend} took the other. "
               "Together, the basket did not feel so heavy.",
               "They took some apples out and carried half each. It was easy that way."])
    s.add(["At {friend}'s house, {friend} gave {hero} the biggest, reddest apple "
           "in the basket.",
           "When they got home, {friend}'s grandma made them a warm apple pie."])


def _help_hurt(s, hero, friend):
    s.add(["{friend} had tripped over a root and hurt {friend.his} knee. "
           "{friend.He} was sitting on the ground, trying not to cry.",
           "{friend} had fallen off a log and scraped {friend.his} knee."])
    s.say(friend, ["Ouch! My knee hurts.", "I fell down, and it really hurts."],
          verb=("said", "sniffled", "sobbed"))
    s.add("{hero} helped {friend} stand up. They walked slowly to {hero.his} house, "
          "one step at a time.")
    s.add(["{parent} cleaned the scrape and put a bandage on it. Then {parent.he} "
           "gave them each a cup of warm milk.",
           "{parent} put a cool cloth on the knee and a colorful bandage on top."])
    s.add(["Soon {friend} felt much better.", "Soon {friend} was smiling again."])


def _help_nest(s, hero, friend):
    s.add(["The wind had blown down the little house that {friend} had built "
           "out of sticks and leaves. Only a pile of sticks was left.",
           "A big branch had fallen on {friend}'s little house of sticks and squashed it flat."])
    s.say(friend, ["My house is gone. Where will I sleep tonight?",
                   "All my work is ruined!"], verb=("sobbed", "said", "cried"))
    s.add("{hero} gathered new sticks, and {friend} gathered soft leaves. "
          "They worked together all afternoon.")
    s.add(["They built the walls strong and tied them with long pieces of grass.",
           "They made a round roof and a little door that could open and close."])
    s.add("The new house was even better than the old one.")


def _help_baby_bird(s, hero, friend):
    s.add("{hero} and {friend} found a tiny baby bird on the ground. It had fallen "
          "out of its nest, and it was peeping for its mother.")
    s.say(friend, ["Poor little thing. How can we get it back up?",
                   "Its nest is way up there. What do we do?"])
    if hero.can("fly") or hero.can("climb"):
        verb = "flew" if hero.can("fly") else "climbed"
        s.add("{hero} held the baby bird very gently and " + verb + " up to the nest.")
    else:
        s.add("They ran to get {parent}. {parent} brought a ladder and put the baby "
              "bird gently back in its nest.")
    s.add("The mother bird came back and sang a happy song. The baby bird snuggled "
          "down with its brothers and sisters.")


def plot_helping_friend(s):
    hero, friend = s.ctx["hero"], s.ctx["friend"]
    place = s.ctx["place"] = PLACES[s.pick(("park", "meadow", "hill", "forest"))]
    s.ctx["pthe"], s.ctx["pat"] = place["the"], place["at"]
    problem = s.pick((_help_kite, _help_mud, _help_basket, _help_hurt, _help_nest,
                      _help_baby_bird))
    intro_friend(s, 0.4)
    s.para()
    s.add(["{when}{hero} was playing {pat}.", "{when}{hero} went out to play {pat}.",
           "{when}{hero} was on {hero.his} way home from {pthe}."], when=s.when())
    s.weather_line(0.5)
    if friend.name in s.known:
        s.add(["Then {hero.he} heard {friend} calling for help.",
               "Suddenly, {hero.he} saw {friend} and stopped."])
    else:
        s.add(["Then {hero.he} heard someone calling for help. It was {friend.a_desc} "
               "named {friend}.",
               "On the way, {hero.he} met {friend.a_desc} named {friend}."])
        s.known.add(friend.name)
    s.para()
    problem(s, hero, friend)
    s.para()
    s.say(friend, ["Thank you, {hero}! I could not have done it without you.",
                   "Thank you so much, {hero}! You are the best friend ever.",
                   "You helped me so much, {hero}. Thank you!"], verb=("said", "cried"))
    s.say(hero, ["You're welcome. That's what friends are for.",
                 "I am happy I could help.",
                 "You would do the same for me."], verb=("said", "replied"))
    s.add(["{hero} felt warm and happy inside.", "{hero} {hero.happy}.",
           "Helping {friend} made {hero} feel very good."])
    ending(s, ["{hero} learned that helping a friend is the best feeling of all.",
               "From that day on, {hero} and {friend} were the best of friends.",
               "When you help others, you make the world a little brighter."])


# The fears, for plot_fear. Each tells the middle of the story.
def _fear_dark(s, hero, parent):
    s.add("{hero} was afraid of the dark.")
    s.add(["Every night, when {parent} turned off the light, {hero} pulled the "
           "blanket over {hero.his} head.",
           "At night, the shadows on the wall looked like big monsters."])
    s.para()
    s.add(["{when}{hero} heard a strange noise. Tap, tap, tap!",
           "{when}{hero} woke up. Something was going tap, tap, tap at the window."],
          when=s.when("night"))
    s.say(hero, ["{parent.address}! There's something at the window!",
                 "{parent.address}, come quick! I'm scared!"], verb=("shouted", "called"))
    s.add(["{parent} came in and sat on the bed.", "{parent} came in and turned on the lamp."])
    s.say(parent, ["Let's look together. Being brave doesn't mean you're not scared.",
                   "Shall we find out what it is? I will hold your hand."
                   if hero.can("person") else
                   "Shall we find out what it is? I will stay right beside you."])
    s.add(["{hero} took a deep breath and walked to the window with {parent}. "
           "{hero.He} pulled back the curtain.",
           "Together, they tiptoed to the window. {hero} peeked outside."])
    s.add(["It was only a little branch tapping on the glass in the wind.",
           "It was only a small owl, tapping on the glass with its beak."])
    s.add(["{hero} laughed. It was not scary at all.",
           "{hero} giggled. {hero.He} had been scared of a {thing}!"],
          thing="branch" if "branch" in s.paras[-1][-1] else "little owl")
    s.add("{parent} gave {hero} a little night light shaped like a {shape}.",
          shape=s.pick(("star", "moon", "fish", "cloud")))
    s.para()
    ending(s, ["After that night, {hero} was not afraid of the dark anymore.",
               "{hero} learned that the dark is just the day with its eyes closed."],
           p_closer=0.2)


def _fear_slide(s, hero, parent):
    friend = s.ctx["friend"]
    s.add("There was a very tall slide in the park. Everyone else "
          "loved it, but {hero} was afraid of it.")
    s.para()
    s.add("{when}{hero} went to the park with {fr}.", when=s.when("day"), fr=s.first(friend))
    s.add(["{friend} climbed the ladder and slid down with a big whoosh.",
           "{friend} went down the slide three times, laughing all the way."])
    s.say(friend, ["Come on, {hero}! It's so much fun!", "Your turn, {hero}!"],
          verb=("shouted", "called"))
    s.say(hero, ["It's too high. What if I fall?", "I can't. It's too tall!"],
          verb=("whispered", "said"))
    s.say(friend, ["I'll go right behind you. You can do it!",
                   "Just go one step at a time. I'll be right here."])
    s.para()
    s.add(["{hero} climbed the first step. Then the second. Then the third. "
           "At the top, {hero.his} knees were shaking.",
           "Slowly, {hero} climbed up the ladder. The ground looked very far away."])
    s.add(["{hero.He} closed {hero.his} eyes and let go.",
           "{hero.He} sat down, counted to three and pushed off."])
    s.add(["Whoosh! {hero} zoomed down the slide and landed in the soft sand.",
           "Whee! The wind rushed past, and in a moment {hero} was at the bottom."])
    s.say(hero, ["That was fun! Let's do it again!", "Again! Again!"],
          verb=("laughed", "shouted"))
    s.add(["{hero} went down the slide ten more times that day.",
           "After that, {hero} was the first in line every time."])
    ending(s, ["{hero} learned that some things look scary until you try them.",
               "{hero} felt very proud of {hero.himself}."])


def _fear_water(s, hero, parent):
    s.add("{hero} was afraid of the water. {hero.He} did not like to get "
          "{hero.his} face wet, and {hero.he} did not know how to swim.")
    if hero.can("swim"):
        s.add("That was funny, because most {kind}s love the water.", kind=hero.kind)
    s.para()
    s.add("{when}{parent} took {hero} to the lake.", when=s.when("day"))
    s.weather_line(0.5)
    s.say(parent, ["Would you like to learn to swim today?",
                   "Shall we try the water together?"])
    s.say(hero, ["I'm scared. The water looks so deep.", "What if I sink?"],
          verb=("said", "whispered"))
    s.say(parent, ["We will start where it is not deep. I will hold you the whole time."])
    s.para()
    s.add(["First, {hero} just put {hero.his} feet in the water. It was cool and nice.",
           "First, {hero} sat at the edge and splashed {hero.his} feet."])
    s.add(["Then {hero.he} walked in a little deeper, holding on to {parent}.",
           "Then, step by step, {hero.he} went in up to {hero.his} middle."])
    s.add("{parent} showed {hero} how to kick {hero.his} legs and move {hero.his} "
          "arms." if hero.can("person") else
          "{parent} showed {hero} how to kick and paddle.")
    s.add(["{hero} kicked and kicked. Then {parent} let go, just for a moment, "
           "and {hero} was swimming all by {hero.himself}!",
           "{hero} tried again and again. On the fifth try, {hero.he} floated, and then "
           "{hero.he} swam three strokes all alone!"])
    s.say(hero, ["Look! I'm swimming!", "I did it! I'm really swimming!"],
          verb=("shouted", "cried"))
    ending(s, ["{hero} was not afraid of the water anymore.",
               "From then on, {hero} loved to swim."])


def _fear_show(s, hero, parent):
    friend = s.ctx["friend"]
    s.add("There was going to be a big show in the town hall, and {hero} "
          "was going to sing a song in front of everyone.")
    s.add("{hero} knew the song very well, but {hero.he} was scared.")
    s.say(hero, ["What if I forget the words? What if everyone laughs?"],
          verb=("said", "whispered"))
    s.para()
    s.add("{when}it was time for the show.", when=s.when("day"))
    s.maybe(1.0 if friend.name not in s.known else 0.0,
            "{fr} came to wish {hero.him} luck.", fr=s.first(friend))
    s.add("The hall was full. {hero} stood behind the curtain, and {hero.his} "
          "tummy felt full of butterflies.")
    s.say(friend, ["Just look at me and sing like you sing at home.",
                   "You sing beautifully. Pretend it's just you and me."])
    s.add("{hero} walked onto the stage. {hero.He} found {friend} in the crowd "
          "and looked right at {friend.him}.")
    s.add("Then {hero.he} began to sing. {hero.His} voice was small at first, "
          "but it grew bigger and stronger.")
    s.add("When the song ended, everyone clapped and cheered.")
    s.say(hero, ["I did it! I really did it!"], verb=("whispered", "said"))
    ending(s, ["{hero} learned that being brave means doing something even when you feel scared.",
               "{hero} was very proud of {hero.himself}."])


def _fear_thunder(s, hero, parent):
    s.add("{hero} was afraid of thunder.")
    s.para()
    s.add("{when}a big storm came. Rain beat on the roof, and the wind howled.",
          when=s.when("night"))
    s.add("Then there was a flash of light and a loud BOOM!")
    s.add("{hero} {hero.moved} into {parent_room} and hid under the blanket.",
          parent_room=("{parent}'s workshop" if hero.kind == "robot"
                       else "{hero.his} {parent_word}'s room").format(**s.ctx))
    s.say(parent, ["Thunder is just the sound the clouds make. It can't hurt you.",
                   "Shall we count? The bigger the number, the farther away the storm is."])
    s.add("Together they counted after each flash. One, two, three, four, five. BOOM. "
          "The next time, they counted to eight.")
    s.say(hero, ["The storm is going away!"], verb=("said", "cried"))
    s.add("Soon the thunder was only a soft rumble, and {hero} fell asleep.")
    ending(s, ["After that, {hero} was not so afraid of storms.",
               "{hero} learned that many scary things are less scary when you understand them."],
           p_closer=0.0)


def plot_fear(s):
    hero, parent = s.ctx["hero"], s.ctx["parent"]
    fear = s.pick((_fear_dark, _fear_slide, _fear_water, _fear_show, _fear_thunder))
    if fear in (_fear_slide, _fear_show):
        intro_friend(s, 0.5)
    s.para()
    s.add(["But {hero} had a secret.", "But there was one thing that {hero} did not like."])
    fear(s, hero, parent)


# Trips for plot_trip: destination, travel, things to pack, sights, activities.
TRIPS = (
    dict(the="the beach", at="At the beach", travel=("by car", "on a bus", "by train"),
         pack=("a big towel", "a bucket and a spade", "some sandwiches", "a sun hat"),
         sights=("big blue waves", "crabs walking sideways", "a tall lighthouse",
                 "white seagulls flying in the sky"),
         acts=("built a sand castle", "looked for shells", "splashed in the waves"),
         keep="a pretty pink shell"),
    dict(the="the farm", at="On the farm", travel=("by car", "on a bus", "in a wagon"),
         pack=("some boots", "a basket for eggs", "a picnic lunch"),
         sights=("cows in the field", "a big red barn", "little piglets", "a tractor"),
         acts=("fed the chickens", "collected eggs", "rode on a tractor"),
         keep="a basket of fresh eggs"),
    dict(the="the mountains", at="In the mountains", travel=("by car", "by train"),
         pack=("warm jackets", "a map", "a picnic lunch", "a flask of cocoa"),
         sights=("snow on the tops of the mountains", "a rushing waterfall",
                 "an eagle high in the sky"),
         acts=("climbed a steep path", "had a picnic by a lake", "threw snowballs"),
         keep="a smooth gray stone"),
    dict(the="the lake", at="At the lake", travel=("by car", "on bikes"),
         pack=("a fishing net", "a blanket", "some sandwiches"),
         sights=("ducks on the water", "a little wooden dock", "tall green reeds"),
         acts=("rowed a little boat", "skipped stones", "swam in the cool water"),
         keep="a white feather"),
    dict(the="the city", at="In the city", travel=("on a train", "on a big bus"),
         pack=("a little backpack", "a snack", "a camera"),
         sights=("tall buildings", "busy streets", "a big clock tower",
                 "a museum full of dinosaur bones"),
         acts=("rode a red bus", "visited a big museum", "ate ice cream in the park"),
         keep="a little toy bus"),
    dict(the="the fair", at="At the fair", travel=("on foot", "by car"),
         pack=("some coins", "a warm sweater"),
         sights=("a giant wheel", "bright lights", "a merry-go-round"),
         acts=("rode the merry-go-round", "ate sweet popcorn", "won a prize at a game"),
         keep="a small stuffed bear"),
)
TRIP_PROBLEMS = (
    ("Suddenly, the wind blew {hero}'s hat away!",
     "{companion} ran after it and caught it just in time."),
    ("After a while, {hero} got very tired and did not want to walk anymore.",
     "{companion} let {hero} rest for a while, and they shared a snack. "
     "Soon {hero} felt much better."),
    ("For a moment, {hero} could not see {companion} anywhere.",
     "Then {hero} heard {companion} calling, and {hero.he} ran back. "
     "{hero.He} stayed close after that."),
    ("It started to rain a little.",
     "They waited under a big tree, and soon the sun came out again."),
)


def plot_trip(s):
    hero, parent, friend = s.ctx["hero"], s.ctx["parent"], s.ctx["friend"]
    trip = s.pick(TRIPS)
    with_friend = s.chance(0.4)
    comp = friend if with_friend else parent
    s.ctx["companion"] = comp
    s.ctx["dest"] = trip["the"]
    s.para()
    if with_friend:
        intro_friend(s, 0.0)
        s.add("{when}{hero} and {fr} went on a trip to {dest}.",
              when=s.when("morning"), fr=s.first(friend))
    else:
        s.add("{when}{parent} said, \"Today we are going on a trip to {dest}!\"",
              when=s.when("morning"))
    s.add(["{hero} was so excited that {hero.he} could not sit still.",
           "{hero} {hero.happy}."])
    s.add("{hero.He} packed {a} and {b}.", a=trip["pack"][0], b=s.pick(trip["pack"][1:]))
    s.add("They went {how}.", how=s.pick(trip["travel"]))
    s.maybe(0.5, "On the way, {hero} looked out of the window and counted {x}.",
            x=s.pick(("cows", "trees", "red cars", "clouds", "bridges")))
    s.para()
    sights = s.rng.sample(trip["sights"], 2)
    s.add(["{at}, {hero} saw {a} and {b}.", "{at}, {hero} could see {a} and {b}."],
          at=trip["at"], a=sights[0], b=sights[1])
    s.say(hero, ["Wow! Look at that!", "This is amazing!", "It's so big!"],
          verb=("shouted", "said", "gasped"))
    acts = s.rng.sample(trip["acts"], 2)
    s.add(["First they {a}. Then they {b}.", "They {a}, and then they {b}."],
          a=acts[0], b=acts[1])
    if s.chance(0.6):
        problem, fix = s.pick(TRIP_PROBLEMS)
        s.add(problem)
        s.add(fix)
    s.para()
    s.add(["When the sun began to set, it was time to go home.",
           "At the end of the day, they were tired and happy."])
    s.add("{hero} took {keep} home to remember the trip.", keep=trip["keep"])
    s.say(hero, ["Can we go again soon?", "That was the best trip ever!"])
    s.maybe(0.6, ["That night, {hero} dreamed about {dest}.",
                  "On the way home, {hero} fell fast asleep."])
    ending(s, ["{hero} could not wait to tell everyone about {dest}.",
               "It had been a wonderful day.",
               "{hero} learned that the world is full of wonderful things to see."],
           p_closer=0.0)


# Mistakes for plot_mistake: what happened, who was hurt, how it was put right,
# how the hero felt afterwards and what the hero said.
MISTAKES = (
    dict(what="{hero} was playing ball inside the house, even though {parent} had said "
              "not to. The ball bounced off the wall and knocked over {parent}'s blue vase. "
              "Crash! The vase broke into three pieces.",
         victim="parent",
         fix="They glued the pieces back together. The vase had a few cracks, but it "
             "still held flowers.",
         guilt=("{hero} hid the pieces under the sofa and said nothing.",
                "At first, {hero} did not want to tell anyone. But all day long, "
                "{hero.his} tummy felt funny."),
         sorry=("I'm sorry. I broke your vase. I was playing ball inside.",
                "I have to tell you something. I made a mistake, and I'm really sorry.")),
    dict(what="{friend} had built a tall tower of blocks. {hero} ran past too fast and "
              "bumped into it. The tower fell down with a crash.",
         victim="friend",
         fix="They built the tower again together, and this time it was even taller.",
         guilt=("{hero} wanted to run away and pretend it was not {hero.his} fault.",
                "{friend} looked at the blocks on the floor, and {hero} felt terrible."),
         sorry=("I'm sorry. I knocked over your tower. I didn't mean to.",
                "I'm sorry, {friend}. I should have been more careful.")),
    dict(what="{hero} borrowed {friend}'s book and took it outside. {hero.He} left it on "
              "the grass, and it got wet in the rain. The pages were all wavy.",
         victim="friend",
         fix="{hero} dried the book carefully by the fire and drew a new picture for "
             "the cover.",
         guilt=("At first, {hero} thought about hiding the book and saying nothing.",
                "The secret felt heavy, like a big stone in {hero.his} pocket."),
         sorry=("I'm sorry. I left your book out in the rain.",
                "I have to tell you something. I made a mistake, and I'm really sorry.")),
    dict(what="{friend} was singing a song, and {friend.he} sang a wrong note. {hero} "
              "laughed and laughed. {friend}'s face went red, and {friend.he} ran off.",
         victim="friend",
         fix="{hero} asked {friend} to teach {hero.him} the song, and they sang it together.",
         guilt=("At first, {hero} thought it was funny. But then {hero.he} remembered "
                "{friend}'s red face.",
                "{hero} did not feel like laughing anymore."),
         sorry=("I'm sorry I laughed at you. That was not kind.",
                "I'm sorry, {friend}. I was mean, and you sing really well.")),
    dict(what="{hero} was very hungry. {hero.He} ate all of the cookies that {parent} had "
              "baked for the picnic with {friend}.",
         victim="parent",
         fix="{hero} helped {parent} bake a new batch of cookies, and {hero.he} did all "
             "the stirring.",
         guilt=("When {hero} saw the empty plate, {hero.he} felt terrible.",
                "{hero} thought about saying that a mouse had eaten them."),
         sorry=("I'm sorry. I ate all the cookies for the picnic.",
                "I have to tell you something. The cookies are gone, and it was me.")),
)


def plot_mistake(s):
    hero, friend, parent = s.ctx["hero"], s.ctx["friend"], s.ctx["parent"]
    intro_friend(s)
    m = s.pick(MISTAKES)
    victim = friend if m["victim"] == "friend" else parent
    s.meet(victim)
    s.ctx["victim"] = victim
    s.para()
    s.add("{when}" + m["what"], when=s.when("day"))
    s.add(["{hero}'s heart beat fast.", "{hero} froze.", "{hero} felt terrible.",
           "For a moment, {hero} did not know what to do."])
    s.maybe(0.6, m["guilt"])
    s.para()
    s.add(["So {hero} went to {victim} and took a deep breath.",
           "At last, {hero} went to find {victim}.",
           "{hero} knew what {hero.he} had to do."])
    s.say(hero, m["sorry"], verb=("said", "whispered"))
    s.add(["{victim} was quiet for a moment.", "{victim} looked sad at first.",
           "{victim} looked at {hero} for a long moment."])
    s.say(victim, ["Thank you for telling me the truth. I forgive you.",
                   "Everyone makes mistakes. I'm glad you told me.",
                   "It's all right. Saying sorry was very brave."])
    s.add(m["fix"])
    s.add(["{hero} felt light and happy again.", "{hero} gave {victim} a big hug."])
    ending(s, ["{hero} learned that saying sorry can fix a lot of things.",
               "{hero} learned that it is always better to tell the truth.",
               "From then on, {hero} tried to be more careful and kind."])


def plot_race(s):
    hero, friend = s.ctx["hero"], s.ctx["friend"]
    judge = s.new_character("judge", kinds=("owl", "bear", "turtle", "elephant"))
    goal = s.ctx["goal"] = s.pick(("the big oak tree", "the old red barn",
                                   "the top of the hill", "the river", "the big rock"))
    intro_friend(s, 0.6)
    s.para()
    s.add("{when}{hero} and {fr} decided to have a race.", when=s.when("day"),
          fr=s.first(friend))
    s.say(hero, ["I bet I can get to {goal} first!", "Let's see who is faster!"],
          verb=("said", "shouted"))
    s.add("All their friends came to watch. {judge.a_desc} named {judge} stood at "
          "the starting line.")
    s.say(judge, ["Ready, set, go!", "On your marks, get set, go!"], verb="shouted")
    s.para()
    twist = s.pick(("show off", "help", "tie"))
    if twist == "show off":
        s.add("{hero} {hero.moved} off very fast and was far ahead in no time.")
        s.add("{hero.He} looked back and laughed. {friend} was far behind.")
        s.add(["\"I have lots of time,\" thought {hero}. So {hero.he} stopped to {act}.",
               "{hero} was so sure {hero.he} would win that {hero.he} stopped to {act}."],
              act=s.pick(("pick some flowers", "watch a butterfly", "take a little nap",
                          "play with a ball")))
        s.add("But {friend} kept going, step by step, and never stopped.")
        s.add("When {hero} finally went on, {friend} was already at {goal}!")
        s.say(hero, ["Oh no! How did you win?"], verb="gasped")
        s.say(friend, ["I just kept going.", "I didn't stop, not even once."])
        lesson = ["{hero} learned not to show off, and to finish what {hero.he} starts.",
                  "{hero} learned that slow and steady can win the race."]
    elif twist == "help":
        s.add("{hero} and {friend} raced side by side. Then {friend} tripped on a stone "
              "and fell down.")
        s.say(friend, ["Ouch!", "Ouch! That hurts!", "Oh no!"], verb="cried")
        s.add("{hero} could have won, but {hero.he} stopped and went back to help.")
        s.add("{hero} helped {friend} up, and they walked to {goal} together.")
        s.add("All their friends cheered louder than ever.")
        s.say(judge, ["You both win today. And {hero}, that was very kind.",
                      "That was the best race I have ever seen."])
        lesson = ["{hero} learned that being kind is more important than winning.",
                  "{hero} did not win the race, but {hero.he} won something better: "
                  "a friend who would never forget."]
    else:
        s.add("They went as fast as they could. First {hero} was ahead, then {friend}, "
              "then {hero} again.")
        s.add("At the very end, they reached {goal} at exactly the same time!")
        s.say(judge, ["It's a tie!", "You both win!"], verb="shouted")
        s.add("{hero} and {friend} fell down on the grass, laughing and out of breath.")
        s.say(friend, ["That was so much fun. Let's race again tomorrow!"])
        lesson = ["{hero} learned that the best part of a race is running it with a friend.",
                  "It did not matter who won. They both had fun."]
    ending(s, lesson)


# Things to make, for plot_making: (name, materials, steps, problem, fix, result).
PROJECTS = (
    ("a sand castle", "a bucket, a spade and a friend",
     "{hero} filled the bucket with wet sand and turned it over. {hero.He} made four towers "
     "and a wall all around.",
     "Then a big wave rolled in and washed half of the castle away!",
     "This time {hero} built the castle farther from the water and dug a ditch "
     "to catch the waves.",
     "The new castle had five towers and a flag made from a leaf."),
    ("a birdhouse", "some wood, a little hammer and a pot of blue paint",
     "{hero} put the pieces of wood together and tapped them with the hammer.",
     "But the roof kept falling off.",
     "{parent} showed {hero} how to use a little bit of glue to hold the roof in place.",
     "Soon a little bird came to live in the birdhouse."),
    ("a cake for {parent}", "flour, eggs, sugar and milk",
     "{hero} mixed the flour and the sugar. Then {hero.he} cracked the eggs into the bowl.",
     "But when {hero.he} took the cake out of the oven, it was flat like a pancake.",
     "{hero} tried again, and this time {hero.he} remembered to add the baking powder.",
     "The cake was tall and soft, and it smelled wonderful."),
    ("a paper boat", "a big piece of paper and some crayons",
     "{hero} folded the paper once, then twice, then again, and drew a little flag on it.",
     "But when {hero.he} put the boat in a puddle, it tipped over.",
     "{hero} folded a new boat and made the bottom wide and flat.",
     "The boat sailed all the way across the puddle."),
    ("a fort", "sticks, leaves and an old blanket",
     "{hero} leaned the sticks against a tree and laid the blanket over the top.",
     "But then the wind blew, and the whole fort fell down.",
     "{hero} tied the sticks together with long grass so they would hold.",
     "The fort was strong and cozy, with room for two."),
    ("a kite", "paper, two thin sticks and a long string",
     "{hero} tied the sticks into a cross and glued the paper on top. Then {hero.he} "
     "added a long tail made of ribbons.",
     "But the kite would not fly. It just dragged along the ground.",
     "{hero} waited for a windy day and ran as fast as {hero.he} could.",
     "The kite rose high into the sky, and its tail danced in the wind."),
)


def plot_making(s):
    hero, friend, parent = s.ctx["hero"], s.ctx["friend"], s.ctx["parent"]
    name, stuff, steps, problem, fix, result = s.pick(PROJECTS)
    s.ctx["project"] = s.fmt(name)
    s.para()
    s.add(["{when}{hero} decided to make {project}.",
           "{when}{hero} had a wonderful idea. {hero.He} would make {project}!"],
          when=s.when("day"))
    s.add("{hero.He} needed {stuff}.", stuff=stuff)
    helper = friend if s.chance(0.5) else None
    if helper:
        s.meet(friend)
        s.add("{hero} asked {fr} to help.", fr=s.first(friend))
    s.add(steps)
    s.para()
    s.add(problem)
    s.add(["{hero} felt like giving up.", "{hero} {hero.sad}.",
           "{hero} was very disappointed."])
    if helper:
        s.say(friend, ["Let's try again. I'll help you.",
                       "Don't give up! We can do it together."])
    else:
        s.say(parent, ["Everyone makes mistakes. Try one more time.",
                       "Don't give up. What could you do differently?"])
    s.add(fix)
    s.para()
    s.add(result)
    s.say(hero, ["I did it!" if not helper else "We did it!",
                 "Look what I made!" if not helper else "Look what we made!"],
          verb=("shouted", "said", "cried"))
    s.add(["{hero} was very proud.", "{hero} {hero.happy}."])
    ending(s, ["{hero} learned that if at first you don't succeed, you try again.",
               "{hero} learned that mistakes help us learn.",
               "{hero} learned to never give up."])


INDOOR_FUN = (
    ("build a fort out of blankets and pillows",
     ("They built a big fort out of blankets and pillows. Inside, it was dark and cozy, "
      "and they read stories with a flashlight.",
      "They piled up pillows and hung a blanket over two chairs. The fort was so cozy "
      "that they had their lunch inside it.")),
    ("bake some cookies",
     ("They mixed flour, butter and sugar, and they put little chocolate chips on top. "
      "Soon the whole house smelled sweet.",
      "They rolled out the dough and cut it into stars and hearts. When the cookies "
      "came out of the oven, they ate them while they were still warm.")),
    ("paint pictures",
     ("They painted pictures of the sun, the sea and a big purple dragon. "
      "Soon the table was covered in colors.",
      "They painted a long picture of a sunny day, with a big yellow sun in the middle. "
      "They hung it on the wall to cheer everyone up.")),
    ("put on a puppet show",
     ("They made puppets out of old socks and put on a funny puppet show. "
      "Everyone laughed until their tummies hurt.",
      "They made a little stage out of a box and used their toys as puppets. "
      "The show was about a brave mouse who sailed across the sea.")),
    ("make a band",
     ("They banged on pots and pans, shook a box of beans and sang at the top of their voices. "
      "It was very loud and very fun.",
      "They made drums out of boxes and a shaker out of a jar of rice. "
      "Then they marched around the house, playing a happy song.")),
    ("do a big puzzle",
     ("They spread the pieces of a big puzzle on the floor. Piece by piece, "
      "a picture of a ship on the sea appeared.",
      "They worked on a puzzle with a hundred pieces. The very last piece was "
      "hiding under the sofa!")),
)


def plot_rainy_day(s):
    hero, parent, friend = s.ctx["hero"], s.ctx["parent"], s.ctx["friend"]
    plan = s.pick(("go on a picnic", "play in the park", "fly a kite",
                   "go to the beach", "ride their bikes", "play football"))
    s.ctx["plan"] = plan
    intro_friend(s, 0.5)
    s.para()
    s.add(["{when}{hero} and {fr} were going to {plan}.",
           "{when}{hero} and {fr} had a big plan. They were going to {plan}."],
          when=s.when("morning"), fr=s.first(friend))
    s.add(["But when {hero} looked out of the window, it was raining. Big drops "
           "ran down the glass.",
           "But then dark clouds rolled in, and it began to rain. Pitter, patter, "
           "pitter, patter.",
           "But just as {hero} was getting ready, it started to pour."])
    s.say(hero, ["Oh no! Now we can't {plan}.", "Why does it have to rain today?",
                 "Rain, rain, go away!"], verb=("said", "groaned"))
    s.add(["{hero} {hero.sad}.", "{hero} sat by the window and watched the rain.",
           "{hero} pressed {hero.his} nose against the window and sighed."])
    s.para()
    fun, fun_texts = s.pick(INDOOR_FUN)
    s.say(parent, ["Rainy days can be fun too. Why don't you {fun}?",
                   "I have an idea. Let's {fun}!",
                   "Cheer up. We can {fun} instead."], fun=fun)
    s.add(["Soon {friend} came over, wearing a raincoat and big boots.",
           "Soon there was a knock at the door. It was {friend}, wet from head to toe!",
           "Then {friend} came over with a big umbrella."])
    s.add(fun_texts)
    s.add(["{hero} forgot all about the rain.", "The time went by very fast.",
           "They were having so much fun that they did not even hear the rain."])
    s.para()
    s.add(["In the afternoon, the rain stopped.",
           "After lunch, the clouds began to clear.",
           "Later, the sun peeked out from behind the clouds."])
    s.add("{hero} and {friend} put on their boots and ran outside.")
    s.add(["They jumped in all the puddles. Splash! Splash!",
           "They jumped in the biggest puddle they could find. SPLASH!",
           "They floated little leaf boats in the puddles.",
           "They found a family of snails on the garden wall."])
    if s.chance(0.7):
        s.add(["Then they saw a rainbow across the sky.",
               "High above the trees, there was a bright rainbow."])
        s.say(friend, ["Look! A rainbow!", "Look, {hero}! It has all the colors!"],
              verb=("shouted", "said"))
    ending(s, ["{hero} learned that a rainy day can still be a happy day.",
               "After that day, {hero} did not mind the rain so much.",
               "{hero} decided that rainy days were not so bad after all."])


GIFTS = (("a card with a big yellow sun on it", "drew"),
         ("a crown of daisies", "made"),
         ("a necklace of shiny shells", "made"),
         ("a picture of the two of them playing together", "painted"),
         ("a little song", "wrote"),
         ("a tiny boat out of a walnut shell", "made"),
         ("a bookmark with pressed flowers", "made"))
CAKES = ("a big chocolate cake", "a strawberry cake", "a lemon cake",
         "a tall honey cake", "a carrot cake")
PARTY_GAMES = ("played musical chairs", "played hide and seek", "danced to silly songs",
               "played a game of tag", "had a treasure hunt in the garden")


def plot_birthday(s):
    hero, friend, parent = s.ctx["hero"], s.ctx["friend"], s.ctx["parent"]
    intro_friend(s)
    s.para()
    cake = s.pick(CAKES)
    if s.chance(0.5):
        # The friend's birthday: the hero needs a present.
        s.add(["{when}{hero} remembered that tomorrow was {friend}'s birthday.",
               "{when}{friend} told {hero} some big news. Tomorrow was {friend.his} birthday!"],
              when=s.when("day"))
        s.add(["{hero.He} wanted to give {friend} a present, but {hero.he} did not "
               "have any money.",
               "{hero} wanted to give {friend} something special, but the shops were closed."])
        s.say(hero, ["What can I give {friend}?", "What will I do?"], verb=("wondered", "asked"))
        gift, verb = s.pick(GIFTS)
        s.add(["Then {hero.he} had an idea. {hero.He} {verb} {gift}.",
               "{hero} thought and thought. At last, {hero.he} {verb} {gift}."],
              gift=gift, verb=verb)
        s.maybe(0.5, "It took {hero.him} all afternoon, but {hero.he} did not mind.")
        s.para()
        s.add(["At the party, there were balloons and {cake} with candles.",
               "The next day, {friend}'s house was full of balloons, and there was {cake} "
               "on the table."], cake=cake)
        s.add(["Everyone sang \"Happy Birthday.\"", "They {game}.", "First, they {game}."],
              game=s.pick(PARTY_GAMES))
        s.add(["{friend} opened {friend.his} presents. There were toys and books and games.",
               "{friend} got lots of presents: a red wagon, a big book and a kite."])
        s.add(["{hero} gave {friend} {hero.his} present. {hero.He} was a little shy.",
               "At last, {hero} gave {friend} {hero.his} present."])
        s.say(hero, ["I made it myself.", "It's not much, but I made it for you."],
              verb=("said", "whispered"))
        s.say(friend, ["I love it! It's the best present of all!",
                       "This is my favorite present, because you made it!"],
              verb=("said", "cried"))
        ending(s, ["{hero} learned that the best presents come from the heart.",
                   "{hero} learned that a gift made with love is worth more than gold."])
    else:
        # The hero's own birthday: everyone seems to forget.
        s.add("{when}{hero} woke up and jumped out of bed. It was {hero.his} birthday!",
              when=s.when("morning"))
        s.add(["But nobody said \"Happy Birthday.\" {parent} was busy, and "
               "{friend} said {friend.he} had to go home early.",
               "But {parent} just said good morning, and {friend} walked right past "
               "without a word."])
        s.add(["{hero} {hero.sad}.", "{hero} felt a little sad.",
               "All day long, {hero} waited, but nobody remembered."])
        s.say(hero, ["Did everyone forget my birthday?", "Nobody remembered."],
              verb=("whispered", "said", "sighed"))
        s.para()
        s.add(["In the evening, {parent} asked {hero} to come to the garden.",
               "When it got dark, {parent} said, \"Come with me. I need help with something.\""])
        s.add(["When {hero} opened the door, everyone jumped out.",
               "Suddenly, the lights came on, and all of {hero}'s friends jumped out."])
        s.say(friend, "Surprise! Happy birthday, {hero}!", verb="shouted")
        s.add(["There were balloons and streamers, and on the table was {cake} with candles.",
               "There were balloons, {cake} with candles, and all of {hero}'s friends."],
              cake=cake)
        s.say(friend, ["We didn't forget. We were getting ready for your party!",
                       "We were planning this all day!"], verb=("laughed", "said"))
        s.add("{hero} closed {hero.his} eyes, made a wish, and blew out the candles.")
        s.maybe(0.6, "Then they {game} until it was time for bed.", game=s.pick(PARTY_GAMES))
        ending(s, ["It was the best birthday ever.",
                   "{hero} learned that good friends never really forget."])


SHARED_LIKES = ("drawing", "building things", "looking at bugs", "singing", "puzzles",
                "jokes", "stories about pirates", "collecting pretty stones")


def plot_new_friend(s):
    hero = s.ctx["hero"]
    new = s.new_character("new", trait="shy")
    s.para()
    if s.chance(0.5):
        s.add("{when}a new family moved into the house next door. With them came "
              "{new.a_desc} named {new}.", when=s.when("day"))
        s.add(["{new.He} was sitting alone on the front steps.",
               "{new.He} looked around with big, worried eyes."])
    else:
        s.add("{when}{hero} saw someone new {pat}. It was {new.a_desc} named {new}.",
              when=s.when("day"), pat=s.pick(("in the park", "at school", "by the pond")))
        s.add(["{new.He} was standing all alone.", "{new.He} was sitting by {new.himself}."])
    s.maybe(0.5, ["The other children whispered, but nobody said hello.",
                  "Everyone else was busy playing, and nobody noticed {new}."])
    s.add(["{hero} remembered how it felt to be new.",
           "{hero} thought {new} looked lonely.",
           "{hero} felt a little shy too, but {hero.he} wanted to be kind."])
    s.para()
    s.add(["{hero} {hero.walked} over and smiled.",
           "{hero} took a deep breath and went over."])
    s.say(hero, ["Hi! I'm {hero}. Do you want to play with me?",
                 "Hello! My name is {hero}. What's your name?",
                 "Hi there! Are you new here?"])
    s.say(new, ["I'm {new}. We just moved here.", "My name is {new}. I'm new here."],
          verb=("said", "whispered"))
    s.maybe(0.4, "{new} did not know anyone yet.")
    s.add(["They found out that they both loved {thing}.",
           "It turned out that {new} loved {thing}, just like {hero}!"],
          thing=s.pick(SHARED_LIKES))
    s.add(["They played together all afternoon.", "Soon they were laughing like old friends.",
           "They talked and played until the sun went down."])
    s.maybe(0.6, ["{new} taught {hero} a new game from {new.his} old home, and "
                  "{hero} showed {new} the best places to play.",
                  "{hero} showed {new} the big oak tree, the duck pond and the best "
                  "hill for rolling down."])
    s.para()
    s.add(["When it was time to go home, {new} was smiling.",
           "At the end of the day, {new} did not feel new anymore."])
    s.say(new, ["Thank you for being my friend, {hero}.",
                "Can we play again tomorrow?"])
    s.say(hero, ["Of course!", "Yes! Every day!"], verb=("said", "laughed"))
    ending(s, ["From that day on, {hero} and {new} were best friends.",
               "{hero} learned that a simple hello can make a new friend.",
               "A little kindness made a big difference."])


# (seed, what it grew into, what the hero did with it)
PLANTS = (("sunflower", "a tall yellow sunflower, taller than {hero}",
           "{hero} showed it to everyone {hero.he} knew."),
          ("tomato", "a bush full of round red tomatoes",
           "{hero} shared the tomatoes with {hero.his} friends and neighbors."),
          ("pumpkin", "a big orange pumpkin",
           "{hero} and {parent} made pumpkin soup, and it was delicious."),
          ("strawberry", "a little plant full of sweet red strawberries",
           "{hero} picked the strawberries and shared them with {hero.his} friends."),
          ("bean", "a bean plant that climbed all the way up the fence",
           "{hero} picked a whole basket of green beans for dinner."),
          ("carrot", "a row of fat orange carrots",
           "{hero} pulled them up and washed them, and they were crunchy and sweet."))


def plot_garden(s):
    hero, parent = s.ctx["hero"], s.ctx["parent"]
    plant, result, share = s.pick(PLANTS)
    s.para()
    s.add(["{when}{parent} gave {hero} a tiny {plant} seed.",
           "{when}{hero} found a little packet of {plant} seeds. {hero.He} took out one seed.",
           "{when}an old gardener gave {hero} a {plant} seed."],
          when=s.when("morning"), plant=plant)
    if s.chance(0.5):
        s.add("{hero} dug a small hole in the garden and put the seed inside. "
              "Then {hero.he} covered it with soil and gave it some water.")
    else:
        s.add("{parent} helped {hero} fill a little pot with soil. {hero} pushed the seed "
              "into the soil and put the pot on a sunny windowsill.")
    s.para()
    s.add(["The next morning, {hero} ran to look. Nothing had happened. "
           "The day after that, there was still nothing.",
           "Every morning, {hero} looked at the soil. But there was only brown dirt.",
           "{hero} waited one day, then two days, then three. Still nothing."])
    s.say(hero, ["Why isn't it growing?", "When will it grow?", "Is it broken?"],
          verb=("asked", "sighed"))
    s.say(parent, ["Seeds need time. Give it water and sunshine, and be patient.",
                   "Good things take time. Just keep looking after it.",
                   "Under the soil, the seed is busy. You just can't see it yet."])
    s.maybe(0.4, ["{hero} even sang a little song to the seed, just in case it helped.",
                  "{hero} wanted to dig up the seed to see what was happening, but "
                  "{hero.he} didn't."])
    s.add(["So every day, {hero} watered the seed and waited.",
           "So {hero} waited, and watered, and waited some more."])
    s.para()
    s.add(["One morning, {hero} saw a tiny green sprout poking out of the soil!",
           "Then one day, there it was: a little green shoot with two tiny leaves!"])
    s.say(hero, ["It's growing! It's really growing!", "Look! It's alive!"],
          verb=("shouted", "cried"))
    s.maybe(0.4, ["One day, a hungry snail came to eat the leaves, so {hero} gently "
                  "carried it to the other end of the garden.",
                  "One hot week, the leaves began to droop, so {hero} gave the plant "
                  "extra water every evening."])
    s.add(["The sprout grew taller and taller. Weeks went by, and at last it became {result}.",
           "It grew a little every day. By the end of the summer, it was {result}."],
          result=s.fmt(result))
    s.add(share)
    ending(s, ["{hero} learned that good things come to those who wait.",
               "{hero} learned to be patient.",
               "Now {hero} plants new seeds every spring."])


LURES = ("a bright blue butterfly", "a rabbit with a white tail", "a red balloon floating away",
         "a trail of little footprints", "a shiny green beetle", "a song coming from the trees")
# What the helper asks and what the hero answers.
LOST_TALK = (("Are you lost, little one?", "Yes. I can't find my way home."),
             ("What are you doing here all alone?", "I followed {lure}, and now I'm lost."),
             ("Why do you look so sad?", "I'm lost, and it's getting dark."))


def plot_lost_way(s):
    hero, parent = s.ctx["hero"], s.ctx["parent"]
    helper = s.new_character("helper", kinds=("owl", "bear", "bird", "fox", "squirrel",
                                              "hedgehog"))
    lure = s.pick(LURES)
    s.para()
    s.add(["{when}{hero} was playing {where}.", "{when}{hero} went out to play {where}."],
          when=s.when("afternoon"),
          where=s.pick(("at the edge of the forest", "in the meadow near the woods",
                        "by the old stone wall at the end of the garden")))
    s.say(parent, ["Stay close to the house, {hero}!", "Don't go into the woods, {hero}!"],
          verb="called")
    s.add(["But then {hero} saw {lure} and followed it into the trees.",
           "But soon {hero} noticed {lure}. {hero.He} followed it, step by step, into the woods."],
          lure=lure)
    s.add(["{hero.He} {hero.walked} deeper and deeper into the forest.",
           "{hero.He} forgot all about what {parent} had said."])
    s.para()
    s.add(["When {hero.he} looked around, {hero.he} did not know where {hero.he} was. "
           "All the trees looked the same.",
           "Suddenly, {hero} stopped. Nothing looked familiar. Which way was home?"])
    s.maybe(0.5, ["The sun was going down, and the shadows grew long.",
                  "An owl hooted somewhere, and the wind whispered in the leaves."])
    s.add(["{hero} felt scared.", "{hero}'s heart beat fast.", "{hero} sat down on a log."])
    s.say(hero, ["Hello? Is anyone there?", "I want to go home."],
          verb=("called", "whispered"))
    s.maybe(0.4, "Then {hero} remembered what {parent} always said: if you are lost, "
                 "stay where you are.")
    s.para()
    s.add(["Just then, {helper.a_desc} named {helper} appeared.",
           "Just then, there was a rustle in the leaves, and out came {helper.a_desc} "
           "named {helper}."])
    question, answer = s.pick(LOST_TALK)
    s.say(helper, question)
    s.say(hero, answer, lure=lure)
    if helper.can("fly"):
        s.add("{helper} flew up above the trees and looked around.")
        s.say(helper, ["I can see your house! Follow me.",
                       "Your house is not far. Come this way."])
    else:
        s.say(helper, ["Don't worry. Follow the little stream. It goes right past your house.",
                       "Come with me. I know the way.",
                       "I know every path in this forest. Stay close to me."])
    s.add(["{hero} and {helper} walked along the path until {hero} could see {hero.his} home.",
           "They followed the stream, and soon {hero} saw the lights of {hero.his} house."])
    s.add(["{parent} was waiting at the door and gave {hero} a big hug.",
           "{parent} came running and held {hero} tight."])
    s.say(parent, ["I was so worried about you!", "There you are! I was looking everywhere."])
    s.say(hero, ["I'm sorry. I will stay close from now on.",
                 "I'm sorry. I won't go off alone again."])
    s.maybe(0.5, "{parent} thanked {helper} and gave {helper.him} a basket of {food}.",
            food=s.pick(("berries", "apples", "nuts", "seeds")))
    ending(s, ["{hero} learned to always stay close and tell a grown-up where {hero.he} is going.",
               "{hero} never forgot the kind {helper.kind} who helped {hero.him} home."])


SNOW_FUN = (
    ("They rolled a small snowball into a big one. Then they made a middle one and a "
     "little one for the head.",
     "They gave the snowman {eyes} for eyes, {nose} for a nose and a stick for each arm.",
     "They named the snowman {name}."),
    ("They pulled a sled to the top of the hill. Then they sat down, held on tight "
     "and zoomed down. Whee!",
     "They went up and down the hill again and again, until their cheeks were pink.",),
    ("They lay down in the soft snow and waved their arms and legs to make snow angels.",
     "Then they made a whole row of snow angels holding hands."),
    ("They built a snow fort with thick white walls.",
     "Then they had a snowball fight, and {friend} got snow all over {friend.his} nose."),
    ("They followed little tracks in the snow. The tracks led to a tree, where a "
     "squirrel was eating a nut.",),
)


def plot_snow_day(s):
    hero, friend, parent = s.ctx["hero"], s.ctx["friend"], s.ctx["parent"]
    s.para()
    s.add(["{when}{hero} looked out of the window. Everything was white!",
           "{when}{hero} woke up, and the whole world was quiet and white.",
           "{when}{hero} saw big, soft snowflakes falling past the window."],
          when=s.when("morning"))
    s.say(hero, ["Snow! It snowed last night!", "It's snowing! Can I go outside?",
                 "Snow, snow, snow!"], verb=("shouted", "cried"))
    s.add(["{hero} put on {hero.his} warm hat, {hero.his} scarf and {hero.his} mittens.",
           "{parent} wrapped a warm scarf around {hero}'s neck.",
           "{parent} made sure {hero} was wrapped up warm before {hero.he} went out."])
    s.add(["Outside, {fr} was already waiting.", "Soon {fr} came over to play."],
          fr=s.first(friend))
    s.para()
    for fun in s.rng.sample(SNOW_FUN, 2):
        for line in fun:
            s.add(line, eyes=s.pick(("two stones", "two buttons", "two pinecones")),
                  nose=s.pick(("a carrot", "a little twig")),
                  name=s.pick(("Mister Snow", "Frosty Pop", "Big Button", "Chilly")))
    s.para()
    s.add(["When their toes got cold, they went inside.",
           "Soon their noses were red and their toes were cold, so they went inside."])
    s.add("{parent} made them {drink}.",
          drink=s.pick(("hot cocoa with little marshmallows on top", "warm soup",
                        "cups of warm milk with honey")))
    s.say(hero, ["This is the best snow day ever!", "Can it snow again tomorrow?"])
    ending(s, ["They sat by the fire and watched the snow fall until it was dark.",
               "{hero} fell asleep that night dreaming of snowflakes."], p_closer=0.2)


def plot_night_sky(s):
    hero, parent = s.ctx["hero"], s.ctx["parent"]
    s.para()
    s.add(["{when}{hero} could not sleep.", "{when}{hero} lay in bed, wide awake."],
          when=s.when("night"))
    s.add(["{hero.He} tossed and turned, but {hero.his} eyes would not stay closed.",
           "{hero.He} counted sheep, but it did not help."])
    s.add("So {hero} got up and looked out of the window.")
    s.add(["The moon was big and round, and the sky was full of stars.",
           "A thin silver moon hung over the trees, and the stars twinkled."])
    s.say(hero, ["How many stars are there?", "Where do the stars go in the day?",
                 "Is the moon following me?"], verb=("whispered", "wondered"))
    s.para()
    if s.chance(0.5):
        s.add("{parent} came in and sat next to {hero} by the window.")
        guide = parent
    else:
        guide = s.new_character("guide", kinds=("owl",))
        s.add("Just then, {guide.a_desc} named {guide} landed on the windowsill.")
    s.ctx["guide"] = guide
    s.say(guide, ["There are more stars than anyone can count.",
                  "The stars are always there. In the day, the sun is just too "
                  "bright to see them.",
                  "Let's look for pictures in the stars."])
    s.add(["Together, they found a group of stars shaped like a big spoon, and "
           "another shaped like a kite.",
           "{guide} showed {hero} a bright star that never moves. \"That star can help "
           "you find your way,\" {guide.he} said."])
    if s.chance(0.6):
        s.add("Then a shooting star zoomed across the sky!")
        s.say(guide, ["Quick, make a wish!"], verb="said")
        s.add("{hero} closed {hero.his} eyes and made a wish. {hero.He} did not tell "
              "anyone what it was.")
    s.para()
    s.add(["Soon {hero}'s eyes began to feel heavy.", "After a while, {hero} gave a big yawn."])
    s.say(hero, ["Goodnight, moon. Goodnight, stars.", "I think I can sleep now."],
          verb=("whispered", "yawned"))
    s.add(["{hero} climbed back into bed and fell fast asleep.",
           "{guide} tucked {hero} in, and {hero} was asleep in no time."])
    ending(s, ["That night, {hero} dreamed of flying among the stars.",
               "From then on, whenever {hero} could not sleep, {hero.he} said goodnight "
               "to the stars."], p_closer=0.0)


TREASURE_MAPS = ("in a bottle on the beach", "in an old box in the attic",
                 "inside a book at the library", "under a loose stone in the garden wall")
# (what the map says, what the friends do)
TREASURE_CLUES = (
    ("The map said: Start at the big oak tree and walk ten steps toward the river.",
     "So they walked ten steps, counting out loud all the way to ten."),
    ("The first clue said: Go to the oldest tree in the park and look for a painted stone.",
     "They looked and looked until {friend} found a stone with a little red arrow on it."),
    ("The dotted line went past an old well and over a little bridge.",
     "They walked past the old well and tiptoed over the creaky wooden bridge."),
)
TREASURES_FOUND = (
    ("It was a box of old marbles with a note from long ago.",
     "{hero} showed the marbles to {parent}, who smiled. They had belonged to "
     "{parent.him} when {parent.he} was little."),
    ("It was a tin full of shiny buttons, colored stones and a tiny silver bell.",
     "They shared the treasure, and each of them kept one shiny button forever."),
    ("It was a little wooden chest. Inside, there was only a note. It said, \"The real "
     "treasure is a good friend.\"",
     "{hero} looked at {friend} and laughed. The note was right."),
    ("It was a bag of seeds with a label that said, \"Plant me.\"",
     "They planted the seeds, and in the spring the garden was full of flowers."),
)


def plot_treasure_hunt(s):
    hero, friend = s.ctx["hero"], s.ctx["friend"]
    intro_friend(s, 0.5)
    s.para()
    s.add(["{when}{hero} found an old map {where}.",
           "{when}{hero} and {fr} found a crumpled old map {where}."],
          when=s.when("day"), where=s.pick(TREASURE_MAPS), fr=s.first(friend))
    s.add("On the map, there was a dotted line and a big red X.")
    s.say(hero, ["A treasure map! Let's find the treasure!", "X marks the spot!"],
          verb=("shouted", "gasped", "cried"))
    s.maybe(1.0 if friend.name not in s.known else 0.0,
            "{hero} ran to show the map to {fr}.", fr=s.first(friend))
    s.para()
    clue, action = s.pick(TREASURE_CLUES)
    s.add(clue)
    s.add(action)
    s.add(["Next, they had to cross the stream. They jumped from stone to stone without "
           "getting wet.",
           "Next, they crawled under a fallen tree and climbed over a little hill."])
    s.maybe(0.5, ["{hero} wanted to give up, but {friend} said, \"We are almost there!\"",
                  "Once they went the wrong way, but {friend} looked at the map again and "
                  "found the right path."])
    s.para()
    s.add(["At last, they came to a big flat rock with a red cross painted on it.",
           "At last, they found the spot. Two sticks lay on the ground, crossed "
           "like the X on the map."])
    s.add("They dug and dug until they hit something hard.")
    found, after = s.pick(TREASURES_FOUND)
    s.add(found)
    s.say(friend, ["We found it! We really found it!", "Wow! Real treasure!"],
          verb=("shouted", "cried"))
    s.add(after)
    ending(s, ["{hero} learned that an adventure is more fun with a friend.",
               "It was the best adventure {hero} and {friend} ever had.",
               "{hero} and {friend} kept the old map, just in case."])


# Every plot with the weathers it can start in (None: any nice weather).
PLOTS = (
    ("lost object", plot_lost_object, None),
    ("sharing", plot_sharing, None),
    ("helping a friend", plot_helping_friend, None),
    ("fear overcome", plot_fear, None),
    ("a trip", plot_trip, None),
    ("a mistake and an apology", plot_mistake, None),
    ("a race", plot_race, None),
    ("making something", plot_making, None),
    ("a rainy day", plot_rainy_day, ("cloudy",)),
    ("a birthday", plot_birthday, None),
    ("a new friend", plot_new_friend, None),
    ("a garden", plot_garden, ("sunny", "warm", "bright")),
    ("lost in the forest", plot_lost_way, None),
    ("a snow day", plot_snow_day, ("snowy",)),
    ("a night under the stars", plot_night_sky, None),
    ("a treasure hunt", plot_treasure_hunt, None),
)
PLOT_NAMES = tuple(p[0] for p in PLOTS)


# =============================================================================
# 6. Putting a story together
# =============================================================================

def build_story(rng):
    """Return (text, plot name, opening name) for one story."""
    for _ in range(50):
        s = Story(rng)
        plot_name, plot, weathers = s.pick(PLOTS)
        s.set_weather(weathers or NICE_WEATHER)
        hero = s.new_character("hero")
        s.meet(s.new_parent(hero))       # on stage from the start, for "she said"
        s.new_character("friend")
        opening = tell_opening(s)
        plot(s)
        text = s.text()
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            return text, plot_name, opening
    return text, plot_name, opening


def generate_story(rng) -> str:
    """One story from a ``random.Random``; the same state gives the same story."""
    return build_story(rng)[0]


def story_rng(seed, k):
    """The random generator of story number k of the corpus for this seed."""
    return random.Random("servelab-stories:%d:%d" % (seed, k))


# =============================================================================
# 7. Writing the corpus (optionally with several worker processes)
# =============================================================================

CHUNK = 200                                  # stories per work unit
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words_of(text):
    """The set of distinct lower-case words in a text."""
    return set(_WORD_RE.findall(text.lower()))


def _make_chunk(job):
    """Worker: stories start .. start+count-1 and the words they use."""
    seed, start, count = job
    stories = [generate_story(story_rng(seed, k)) for k in range(start, start + count)]
    return stories, words_of("\n".join(stories))


def _chunks_in_order(seed, total, workers):
    """Yield the results of consecutive chunks, in story order.

    ``total`` is the number of stories, or None for "until told to stop".
    With several workers a bounded number of chunks is kept in flight, so an
    unlimited corpus does not queue up unlimited work.
    """
    def jobs():
        start = 0
        while total is None or start < total:
            count = CHUNK if total is None else min(CHUNK, total - start)
            yield (seed, start, count)
            start += count

    if workers <= 1:
        for job in jobs():
            yield _make_chunk(job)
        return
    with multiprocessing.Pool(workers) as pool:
        pending = collections.deque()
        job_iter = jobs()
        for job in job_iter:
            pending.append(pool.apply_async(_make_chunk, (job,)))
            if len(pending) >= 3 * workers:
                break
        while pending:
            result = pending.popleft().get()
            job = next(job_iter, None)
            if job is not None:
                pending.append(pool.apply_async(_make_chunk, (job,)))
            yield result
        # Leaving the with-block terminates any chunks still running.


def write_corpus(path, seed, megabytes=None, stories=None, workers=1,
                 progress=True, paragraphs=True):
    """Write the corpus; return a dict of statistics.

    Give either ``megabytes`` (stop after the story that reaches
    megabytes * 1,000,000 bytes) or ``stories`` (that many stories). The
    output depends on (seed, size, paragraphs) only, not on ``workers``.
    With ``paragraphs=False`` the paragraphs of a story are joined by a space
    instead of a newline.
    """
    if (megabytes is None) == (stories is None):
        raise ValueError("give exactly one of megabytes and stories")
    target = int(megabytes * 1_000_000) if megabytes is not None else None
    sep = "\n" + SEPARATOR + "\n"
    n = 0
    size = 0
    vocab = set()
    next_report = 0.1
    t0 = time.time()
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        done = False
        for chunk, chunk_words in _chunks_in_order(seed, stories, workers):
            taken = []
            for story in chunk:
                if not paragraphs:
                    story = story.replace("\n", " ")
                piece = (sep if n else "") + story
                out.write(piece)
                size += len(piece.encode("utf-8"))
                n += 1
                taken.append(story)
                if target is not None and size >= target:
                    done = True
                    break
            vocab |= chunk_words if len(taken) == len(chunk) else words_of("\n".join(taken))
            frac = size / target if target else n / stories
            if progress and (frac >= next_report or done):
                dt = max(time.time() - t0, 1e-9)
                print("  %3.0f%%  %7.2f MB  %8d stories  %6.0f stories/s  %.2f MB/s"
                      % (min(frac, 1.0) * 100, size / 1e6, n, n / dt, size / 1e6 / dt),
                      file=sys.stderr)
                while next_report <= frac:
                    next_report += 0.1
            if done:
                break
        out.write("\n")
        size += 1
    dt = time.time() - t0
    return dict(stories=n, bytes=size, seconds=dt, distinct_words=len(vocab))


# =============================================================================
# 8. Self-test
# =============================================================================

_A_BEFORE_VOWEL = re.compile(r"\b[Aa] ([aeiouAEIOU][a-z]*)")
_AN_BEFORE_CONSONANT = re.compile(r"\b[Aa]n ([b-df-hj-np-tv-zB-DF-HJ-NP-TV-Z][a-z]*)")


def _a_an_errors(text):
    bad = [w for w in _A_BEFORE_VOWEL.findall(text)
           if not w.lower().startswith(("uni", "use", "eu", "one"))]
    bad += [w for w in _AN_BEFORE_CONSONANT.findall(text)
            if not w.lower().startswith(("hour", "honest", "honor"))]
    return bad


def self_test():
    """Check the generator; print 'N passed, M failed'; return the exit code."""
    import tempfile
    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL:", what, file=sys.stderr)

    t0 = time.time()
    count = 2000
    results = [build_story(story_rng(1, k)) for k in range(count)]
    texts = [r[0] for r in results]
    again = [generate_story(story_rng(1, k)) for k in range(200)]
    other = [generate_story(story_rng(2, k)) for k in range(200)]
    check(again == texts[:200], "same seed gives the same stories")
    check(sum(a != b for a, b in zip(other, texts)) > 190, "different seeds differ")

    def every(pred, what):
        bad = [t for t in texts if not pred(t)]
        check(not bad, "%s (%d bad, first: %r)" % (what, len(bad), bad[0][:300] if bad else ""))

    every(lambda t: t.strip() != "", "stories are not empty")
    every(lambda t: MIN_WORDS <= len(t.split()) <= MAX_WORDS,
          "stories have %d to %d words" % (MIN_WORDS, MAX_WORDS))
    every(lambda t: t[0].isupper(), "stories start with a capital letter")
    every(lambda t: t.endswith((".", "!", "?", '."', '!"', '?"')),
          "stories end with terminal punctuation")
    every(lambda t: all(p.count('"') % 2 == 0 for p in t.split("\n")),
          "double quotes are balanced in every paragraph")
    every(lambda t: "{" not in t and "}" not in t, "no template placeholders left")
    every(lambda t: "  " not in t and " \n" not in t and "\n\n" not in t,
          "no doubled spaces or empty lines")
    every(lambda t: not re.search(r" [,.!?]|,,|\.\.|[,.!?][A-Za-z]", t),
          "no space before punctuation and a space after it")
    every(lambda t: not re.search(r"[.!?] [a-z]", t),
          "sentences start with a capital letter")
    every(lambda t: SEPARATOR not in t and "None" not in t, "no separator or None inside")
    bad_articles = [w for t in texts[:500] for w in _a_an_errors(t)]
    check(not bad_articles, "a/an agree with the next word: %r" % bad_articles[:5])
    openings = collections.Counter(r[2] for r in results)
    check(len(openings) >= 10, "at least 10 kinds of opening (%d)" % len(openings))
    plots = set(r[1] for r in results)
    check(len(plots) == len(PLOT_NAMES), "all %d plots used" % len(PLOT_NAMES))
    once = sum(t.startswith("Once upon a time") for t in texts) / count
    check(0.3 <= once <= 0.5, "about 40%% start with 'Once upon a time' (%.2f)" % once)
    check(len(set(texts)) == count, "no two stories are the same")

    with tempfile.TemporaryDirectory() as tmp:
        a, b = os.path.join(tmp, "a.txt"), os.path.join(tmp, "b.txt")
        write_corpus(a, 7, stories=450, workers=1, progress=False)
        write_corpus(b, 7, stories=450, workers=2, progress=False)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            da, db = fa.read(), fb.read()
        check(da == db, "output does not depend on the number of workers")
        pieces = da.decode("utf-8").split("\n" + SEPARATOR + "\n")
        check(len(pieces) == 450, "450 stories separated by %s lines" % SEPARATOR)
        check(pieces[0] == generate_story(story_rng(7, 0)), "story 0 comes first")
        info = write_corpus(a, 7, megabytes=0.2, workers=1, progress=False)
        check(200_000 <= info["bytes"] < 200_000 + 2000, "--megabytes stops at the size")

    print("%d passed, %d failed (%.1f s)" % (passed, failed, time.time() - t0))
    return 1 if failed else 0


# =============================================================================
# 9. Command line
# =============================================================================

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--megabytes", type=float, help="corpus size in MB (10^6 bytes)")
    size.add_argument("--stories", type=int, help="number of stories")
    ap.add_argument("--out", help="output file")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes (the output does not depend on it)")
    ap.add_argument("--no-paragraphs", action="store_true",
                    help="join the paragraphs of a story with a space, not a newline")
    ap.add_argument("--sample", type=int, metavar="N",
                    help="print the first N stories of the seed and exit")
    ap.add_argument("--self-test", action="store_true", help="run the checks and exit")
    args = ap.parse_args(argv)

    if args.self_test:
        return self_test()
    if args.sample:
        for k in range(args.sample):
            print(generate_story(story_rng(args.seed, k)))
            print(SEPARATOR)
        return 0
    if not args.out or (args.megabytes is None and args.stories is None):
        ap.error("--out and one of --megabytes / --stories are required")
    print("writing %s (seed %d, %s, %d worker%s)" % (
        args.out, args.seed,
        "%g MB" % args.megabytes if args.megabytes is not None else "%d stories" % args.stories,
        args.workers, "" if args.workers == 1 else "s"), file=sys.stderr)
    info = write_corpus(args.out, args.seed, megabytes=args.megabytes,
                        stories=args.stories, workers=args.workers,
                        paragraphs=not args.no_paragraphs)
    print("done: %d stories, %.2f MB, %d distinct words, %.1f s (%.2f MB/s)" % (
        info["stories"], info["bytes"] / 1e6, info["distinct_words"], info["seconds"],
        info["bytes"] / 1e6 / max(info["seconds"], 1e-9)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
